// Package sshx is devvm's SSH client: it connects to VMs (and, through ProxyJump, to VMs on
// a remote hypervisor) with golang.org/x/crypto/ssh, behaving like OpenSSH but never without
// host key verification.
//
// Keys: EnsureUserKey creates one ed25519 identity per user (OpenSSH format, 0600).
//
// Host keys: each VM has its own known_hosts file holding exactly one ed25519 key recorded
// under a HostKeyAlias ("devvm-<name>"), so VMs reusing a loopback port never get confused.
// `devvm up` boots the VM on its own loopback port and calls WaitReady(..., pin=true) (or
// Pin), which records the key the guest presents; every other connection (Dial, WaitReady
// with pin=false) verifies strictly and refuses unknown or changed keys with
// HostKeyUnknownError / HostKeyMismatchError. The same file works for OpenSSH through the
// stanza written by SSHConfig (UserKnownHostsFile + HostKeyAlias + StrictHostKeyChecking yes).
//
// Commands: Client.Run (scripts; exit status like a shell: remote status or 128+signal,
// 255 with an error when unknown), Client.Interactive (`devvm ssh`: pty and raw mode when
// stdin is a terminal), ShellQuote for argv. Forwarding: LocalForward (-L), RemoteForward
// (-R), ParseForward; KeepAlive; agent forwarding via Target.AgentForward.
//
// The sshtest subpackage is an in-process server for tests.
package sshx
