package vmfile

import (
	"strings"
)

// template is the Vmfile `devvm init` writes. @NAME@ is the VM's name as a
// TOML string, @GUEST@ the default mount point /mnt/<name>.
const template = `# Vmfile: the developer VM of this checkout, read by devvm.
# Every key is optional; commented lines show the defaults.
# Reference: docs/vmfile.md. Keys are case-sensitive; unknown keys are errors.
# Personal settings (memory, cpus, ports) go in Vmfile.local next to this
# file, which you keep out of git (add it to .gitignore).

# Name of the VM (default: the checkout's directory name).
name = @NAME@

# "guix" builds dev-vm.scm with ` + "`guix system vm`" + ` and boots it in QEMU;
# "microvm" runs NixOS microvm.nix VMs (see [microvm] below).
# backend = "guix"

# Guest memory: a number with a unit ("2G", "512M"); a bare integer is MiB.
# memory = "2G"

# Virtual CPUs (1 to 256).
# cpus = 2

# Keep the guest's writes across ` + "`devvm halt`/`devvm up`" + ` (an overlay in devvm's state, outside the checkout).
# persistent = false

# Size of the persistent disk (only with persistent = true; at least "2G").
# disk = "20G"

# How long ` + "`devvm up`" + ` waits for the guest's SSH server. Always give a unit.
# boot_timeout = "10m"

[ssh]
# User devvm logs in as.
# user = "dev"
# Host port on 127.0.0.1 forwarded to the guest's port 22. Unset, devvm uses
# 10022 or the next free port and says so; set, the port is pinned and devvm
# fails when it is busy.
# port = 10022
# Extra public keys allowed to log in: files or literal "ssh-ed25519 ..." lines.
# authorized_keys = ["~/.ssh/id_ed25519.pub"]
# Forward your SSH agent into ` + "`devvm ssh`" + ` sessions.
# forward_agent = false

[guix]
# The guix command.
# command = "guix"
# Operating-system file for ` + "`guix system vm`" + `.
# config = "dev-vm.scm"
# Pinned channels (` + "`guix time-machine -C`" + `).
# channels = "channels.scm"
# The project's packages (default: manifest.scm when it exists).
# manifest = "manifest.scm"
# How long ` + "`guix system vm`" + ` may take.
# build_timeout = "60m"
# Directories of Guile modules the config and manifest use (guix -L).
# load_path = [".guix/modules"]
# For a pinned channel without an introduction only: skip the check that
# its commits are signed by its authorized keys (see docs/vmfile.md).
# disable_authentication = false

# Directories shared with the guest over 9p. The first one is the checkout.
[[share]]
# Host directory, relative to this file (spaces and commas are fine).
host = "."
# Mount point in the guest (letters, digits and / . _ - + @ only).
guest = @GUEST@
# 9p mount tag, fixed in dev-vm.scm so one build serves any checkout path.
tag = "share0"
# Export read-only.
# readonly = false
# "virtio" (QEMU serves it) or "ssh" (devvm serves it over SSH, for remote VMs).
# mode = "virtio"

# More shares: repeat the block with a new guest path and tag.
# [[share]]
# host = "../data"
# guest = "/mnt/data"
# tag = "share1"
# readonly = true

# Ports forwarded from the host to the guest (binds 127.0.0.1 unless bind says).
# [[forward]]
# host = 8080
# guest = 80
# bind = "127.0.0.1"
# proto = "tcp"

# microvm.nix backend (backend = "microvm"):
# [microvm]
# flake = "."
# [microvm.machines.vm1]
# address = "10.1.0.2"
# config = "vm1"
# port = 22
# [microvm.remote]
# destination = "root@hypervisor"
# checkout = "/root/project"
# sync = "git-pull"
`

// Template returns the Vmfile `devvm init` writes for a VM called name:
// every key, commented out at its default unless the value is spelled out
// (name and the checkout's share at /mnt/<name>). It parses to the same
// values as Default with that name.
func Template(name string) []byte {
	r := strings.NewReplacer("@NAME@", tomlString(name), "@GUEST@", tomlString("/mnt/"+name))
	return []byte(r.Replace(template))
}
