// Package vmfile reads, validates and writes the Vmfile: the TOML file at the
// root of a checkout that describes the developer VM devvm manages for it.
package vmfile

// FileName is the name of the Vmfile in a checkout.
const FileName = "Vmfile"

// LocalFileName is the per-user override file next to the Vmfile: not
// committed, it may set only the keys that do not change the VM's build
// (see LocalKeys).
const LocalFileName = "Vmfile.local"

// MaxFileSize is the largest Vmfile (or Vmfile.local) devvm reads: 70
// times the Vmfile `devvm init` writes, and small enough that decoding the
// most hostile file of that size allocates less than 100 MB
// (TestCapMemory).
const MaxFileSize = 256 << 10

// Sizes of the persistent disk (key disk).
const (
	DefaultDisk = 20 * GiB
	MinDisk     = 2 * GiB
)

// Backends devvm knows.
const (
	BackendGuix    = "guix"
	BackendMicroVM = "microvm"
)

// DefaultSSHPort is the host port forwarded to the guest's sshd when the
// Vmfile does not pin one.
const DefaultSSHPort = 10022

// Vmfile is the decoded, defaulted and validated content of a Vmfile.
// Paths in it are as written (relative to the checkout unless absolute);
// use Resolve to get absolute paths.
type Vmfile struct {
	// Name of the VM; defaults to the checkout's directory name.
	Name string `toml:"name"`
	// Backend is "guix" (default) or "microvm".
	Backend string `toml:"backend"`
	// Memory of the guest, e.g. "2G", "512M" or 2048 (MiB).
	Memory Size `toml:"memory"`
	// CPUs of the guest.
	CPUs int `toml:"cpus"`
	// Persistent keeps guest writes across halt/up in an overlay in devvm's state.
	Persistent bool `toml:"persistent"`
	// Disk is the size of the persistent disk (guix system vm
	// --image-size): DefaultDisk unless set; 0 when Persistent is false
	// (the Vmfile may set disk only with persistent = true).
	Disk Size `toml:"disk"`
	// BootTimeout bounds how long `up` waits for SSH (default 10m).
	BootTimeout Duration `toml:"boot_timeout"`

	SSH      SSH       `toml:"ssh"`
	Guix     Guix      `toml:"guix"`
	Shares   []Share   `toml:"share"`
	Forwards []Forward `toml:"forward"`
	MicroVM  *MicroVM  `toml:"microvm"`

	// Dir is the absolute path of the checkout (the Vmfile's directory).
	// Not a TOML key.
	Dir string `toml:"-"`
	// Path is the absolute path of the Vmfile. Not a TOML key.
	Path string `toml:"-"`
	// SSHPortPinned is true when the Vmfile (or Vmfile.local) sets
	// ssh.port explicitly.
	SSHPortPinned bool `toml:"-"`
	// LocalPath is the absolute path of the Vmfile.local that Load read
	// over the Vmfile; "" when there is none.
	LocalPath string `toml:"-"`
	// Local lists the keys Vmfile.local set (entries of LocalKeys, in the
	// order written), e.g. ["memory", "ssh.port"].
	Local []string `toml:"-"`

	index map[string]keyPos // where each key is set, for KeyError
}

// SSH describes how devvm logs in to the guest.
type SSH struct {
	// User in the guest (default "dev").
	User string `toml:"user"`
	// Port on 127.0.0.1 forwarded to the guest's port 22 (default 10022).
	// When set explicitly it is pinned: devvm fails instead of moving on.
	Port int `toml:"port"`
	// AuthorizedKeys are extra public key files (or literal keys) to allow.
	AuthorizedKeys []string `toml:"authorized_keys"`
	// ForwardAgent forwards SSH_AUTH_SOCK into `devvm ssh` sessions.
	ForwardAgent bool `toml:"forward_agent"`
}

// Guix names the Guix inputs of the VM.
type Guix struct {
	// Command is the guix executable (default "guix", looked up in PATH).
	Command string `toml:"command"`
	// Config is the operating-system file (default "dev-vm.scm").
	Config string `toml:"config"`
	// Channels is the pinned channels file (default "channels.scm").
	Channels string `toml:"channels"`
	// Manifest is the project's manifest (default "manifest.scm" when it
	// exists; "" otherwise, or when the Vmfile says manifest = "").
	Manifest string `toml:"manifest"`
	// BuildTimeout bounds `guix system vm` (default 60m).
	BuildTimeout Duration `toml:"build_timeout"`
	// LoadPath are directories of Guile modules (guix -L DIR), as written:
	// relative to the checkout unless absolute; see Resolve.
	LoadPath []string `toml:"load_path"`
	// DisableAuthentication passes --disable-authentication to guix
	// time-machine: for pinned forks without a channel introduction.
	DisableAuthentication bool `toml:"disable_authentication"`
}

// Share is a host directory mounted in the guest.
type Share struct {
	// Host directory (default: the checkout, ".").
	Host string `toml:"host"`
	// Guest mount point (default /mnt/<name>).
	Guest string `toml:"guest"`
	// Tag is the 9p mount tag the guest config mounts (default "share0",
	// "share1", ...). At most 31 bytes, ASCII letters, digits, '_' and '-'.
	Tag string `toml:"tag"`
	// ReadOnly exports the directory read-only.
	ReadOnly bool `toml:"readonly"`
	// Mode is "virtio" (QEMU's own 9p, default for local VMs) or "ssh"
	// (9p served by devvm over the SSH connection).
	Mode string `toml:"mode"`
}

// Share modes.
const (
	ShareVirtio = "virtio"
	ShareSSH    = "ssh"
)

// Forward is a TCP port forwarded from the host to the guest.
type Forward struct {
	// Host port.
	Host int `toml:"host"`
	// Guest port.
	Guest int `toml:"guest"`
	// Bind address on the host (default 127.0.0.1).
	Bind string `toml:"bind"`
	// Proto is "tcp" (default) or "udp".
	Proto string `toml:"proto"`
}

// MicroVM configures the microvm.nix backend.
type MicroVM struct {
	// Flake is the flake directory in the checkout (default ".").
	Flake string `toml:"flake"`
	// Machines by devvm name (vm1, vm2, ...).
	Machines map[string]Machine `toml:"machines"`
	// Remote, when set, runs the VMs on a NixOS hypervisor over SSH.
	Remote *Remote `toml:"remote"`
}

// Machine is one microvm.nix VM.
type Machine struct {
	// Config is the name in nixosConfigurations (default: the table name).
	Config string `toml:"config"`
	// Address of the guest (e.g. 10.1.0.2); for local VMs 127.0.0.1.
	Address string `toml:"address"`
	// User to log in as (default: ssh.user).
	User string `toml:"user"`
	// Port of the guest's sshd (default 22; for local VMs the forwarded port).
	Port int `toml:"port"`
	// Routed means the address is reachable directly (e.g. Tailscale), so
	// no jump through the hypervisor is needed.
	Routed bool `toml:"routed"`
	// IdentityFile is a private key the guest authorizes (its owner's),
	// offered besides devvm's key and the agent's.
	IdentityFile string `toml:"identity_file"`
}

// Remote is the hypervisor that runs microvm.nix VMs.
type Remote struct {
	// Destination is user@host[:port] of the hypervisor.
	Destination string `toml:"destination"`
	// IdentityFile for the hypervisor (default: the SSH agent, then devvm's key).
	IdentityFile string `toml:"identity_file"`
	// KnownHosts file that pins the hypervisor's host key
	// (default ~/.ssh/known_hosts).
	KnownHosts string `toml:"known_hosts"`
	// Checkout is the path of the checkout on the hypervisor.
	Checkout string `toml:"checkout"`
	// Sync is "git-pull" (default: `git pull --ff-only` there) or "copy"
	// (push the flake from here).
	Sync string `toml:"sync"`
}
