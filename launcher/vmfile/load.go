package vmfile

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Error is a problem with one key of a Vmfile (or of Vmfile.local).
type Error struct {
	Path string // the Vmfile, or the Vmfile.local that sets the key
	Line int    // 0 when unknown
	Key  string // e.g. "share[1].guest"; "" for syntax errors between keys
	Msg  string
}

func (e *Error) Error() string {
	loc := e.Path
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.Path, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// Load reads and validates the Vmfile in dir, with the Vmfile.local next
// to it (if any) merged over it. It reads at most MaxFileSize bytes of
// each and is linear in their size (a few milliseconds at the cap), so it
// needs no context: a signal is handled as soon as it returns.
func Load(dir string) (*Vmfile, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("finding the Vmfile: %w", err)
	}
	path := filepath.Join(abs, FileName)
	data, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no Vmfile in %s: run `devvm init` there first, or change to the checkout that has one", abs)
	}
	if err != nil {
		return nil, err
	}
	localPath := filepath.Join(abs, LocalFileName)
	local, err := readFile(localPath)
	if errors.Is(err, os.ErrNotExist) {
		localPath, local = "", nil
	} else if err != nil {
		return nil, err
	}
	return parse(path, data, localPath, local)
}

// readFile reads a Vmfile: a regular file of at most MaxFileSize bytes.
// It never blocks on a FIFO or device put in its place.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read it: %v", unwrapPath(err))}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read it: %v", unwrapPath(err))}
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("is not a regular file (%s): devvm reads only a plain file here", st.Mode().Type())}
	}
	if st.Size() > MaxFileSize {
		return nil, tooBig(path, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read it: %v", unwrapPath(err))}
	}
	if len(data) > MaxFileSize {
		return nil, tooBig(path, int64(len(data)))
	}
	return data, nil
}

func tooBig(path string, size int64) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf("the file is %d bytes, more than the %d (%d KiB) devvm reads: a Vmfile is a few kilobytes of TOML; check that this is the right file", size, MaxFileSize, MaxFileSize>>10)}
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes, defaults and validates Vmfile text (without a
// Vmfile.local). path is the Vmfile's path; its directory is the checkout.
// Parse reads nothing but file metadata (the share directories,
// manifest.scm) and writes nothing.
func Parse(path string, data []byte) (*Vmfile, error) {
	return parse(path, data, "", nil)
}

// parse is Parse with the text of Vmfile.local (at localPath) merged over
// the Vmfile's when localPath is not "".
func parse(path string, data []byte, localPath string, local []byte) (*Vmfile, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	v := &Vmfile{Path: path, Dir: filepath.Dir(path)}
	if err := decode(v, path, data, false); err != nil {
		return nil, err
	}
	if localPath != "" {
		v.LocalPath = localPath
		if err := decode(v, localPath, local, true); err != nil {
			return nil, err
		}
	}
	v.SSHPortPinned = v.defined("ssh.port")
	v.applyDefaults(v.defined)
	if err := v.validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// defined reports whether the Vmfile (or Vmfile.local) sets a key, named
// as errors name it.
func (v *Vmfile) defined(key string) bool {
	_, ok := v.index[key]
	return ok
}

// Default returns the Vmfile devvm uses for a checkout at dir whose Vmfile
// sets nothing: what an empty Vmfile parses to, unvalidated.
func Default(dir string) *Vmfile {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	v := &Vmfile{Dir: dir, Path: filepath.Join(dir, FileName)}
	v.applyDefaults(func(string) bool { return false })
	return v
}

// KeyError returns an *Error for key (named as errors name it:
// "ssh.port", "share[1].guest", "forward[0].host") with the file and line
// where it is set, if it is. For problems found after loading, such as a
// pinned port that is busy.
func (v *Vmfile) KeyError(key, format string, a ...any) *Error {
	e := &Error{Path: v.Path, Key: key, Msg: fmt.Sprintf(format, a...)}
	if p, ok := v.index[key]; ok {
		e.Line = p.line
		if p.local {
			e.Path = v.LocalPath
		}
	}
	return e
}

// missing is KeyError for a key that is not set, pointing at the table
// that lacks it.
func (v *Vmfile) missing(table, key, format string, a ...any) *Error {
	e := v.KeyError(table, format, a...)
	e.Key = table + "." + key
	return e
}

// applyDefaults fills what the Vmfile leaves out. defined reports whether
// the Vmfile sets a key (so an explicit 0 is an error, not a default).
// Empty strings mean "the default".
func (v *Vmfile) applyDefaults(defined func(key string) bool) {
	if v.Name == "" {
		v.Name = SanitizeName(filepath.Base(v.Dir))
	}
	if v.Backend == "" {
		v.Backend = BackendGuix
	}
	if !defined("memory") {
		v.Memory = 2 * GiB
	}
	if !defined("cpus") {
		v.CPUs = 2
	}
	if !defined("boot_timeout") {
		v.BootTimeout = Duration(10 * time.Minute)
	}
	if v.Persistent && !defined("disk") {
		v.Disk = DefaultDisk
	}
	if v.SSH.User == "" {
		v.SSH.User = "dev"
	}
	if !defined("ssh.port") {
		v.SSH.Port = DefaultSSHPort
	}
	if v.Guix.Command == "" {
		v.Guix.Command = "guix"
	}
	if v.Guix.Config == "" {
		v.Guix.Config = "dev-vm.scm"
	}
	if v.Guix.Channels == "" {
		v.Guix.Channels = "channels.scm"
	}
	if v.Guix.Manifest == "" && !defined("guix.manifest") {
		if _, err := os.Stat(filepath.Join(v.Dir, "manifest.scm")); err == nil {
			v.Guix.Manifest = "manifest.scm"
		}
	}
	if !defined("guix.build_timeout") {
		v.Guix.BuildTimeout = Duration(60 * time.Minute)
	}
	remote := v.Backend == BackendMicroVM && v.MicroVM != nil && v.MicroVM.Remote != nil
	if !defined("share") {
		v.Shares = []Share{{}}
	}
	for i := range v.Shares {
		s := &v.Shares[i]
		if s.Host == "" {
			s.Host = "."
		}
		if s.Guest == "" && i == 0 {
			s.Guest = "/mnt/" + v.Name
		}
		if s.Tag == "" {
			s.Tag = fmt.Sprintf("share%d", i)
		}
		if s.Mode == "" {
			s.Mode = ShareVirtio
			if remote {
				s.Mode = ShareSSH
			}
		}
	}
	for i := range v.Forwards {
		f := &v.Forwards[i]
		if f.Bind == "" {
			f.Bind = "127.0.0.1"
		}
		if f.Proto == "" {
			f.Proto = "tcp"
		}
	}
	if m := v.MicroVM; m != nil {
		if m.Flake == "" {
			m.Flake = "."
		}
		for name, mc := range m.Machines {
			if mc.Config == "" {
				mc.Config = name
			}
			if mc.User == "" {
				mc.User = v.SSH.User
			}
			if !defined(joinKey("microvm.machines", name) + ".port") {
				mc.Port = 22
			}
			m.Machines[name] = mc
		}
		if r := m.Remote; r != nil && r.Sync == "" {
			r.Sync = "git-pull"
		}
	}
}

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	userRe   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	tagRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$`)
	configRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)
	hostRe   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$`)
	destRe   = regexp.MustCompile(`^([a-z_][a-z0-9_.-]{0,31}@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$`)
)

// ValidateName checks a VM name, as the Vmfile's name and `devvm init
// --name` take it: lower-case letters, digits, '-' and '_', starting with
// a letter or digit, at most 63 bytes. The error suggests a valid name.
func ValidateName(name string) error {
	if nameRe.MatchString(name) {
		return nil
	}
	return fmt.Errorf("%q is not a valid VM name: use lower-case letters, digits, '-' and '_' (start with a letter or digit, at most 63), e.g. %q", name, SanitizeName(name))
}

// unprivilegedPorts returns the lowest host port devvm's user may bind
// (QEMU binds ssh.port and the forwards as that user): 0 for root, else
// Linux's net.ipv4.ip_unprivileged_port_start (1024 unless lowered). A
// variable, so tests do not depend on who runs them.
var unprivilegedPorts = func() int {
	if os.Geteuid() == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && n >= 0 {
		return n
	}
	return 1024
}

// privilegedPort explains why port cannot be bound, or returns "".
func privilegedPort(port int) string {
	if lo := unprivilegedPorts(); port < lo {
		return fmt.Sprintf("port %d is below %d, and binding it needs root (QEMU runs as you)", port, lo)
	}
	return ""
}

// SanitizeName turns a directory name into a valid VM name: lower case,
// runs of other characters become one '-', at most 63 bytes, "devvm" if
// nothing is left.
func SanitizeName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
			dash = false
		default:
			if !dash {
				b.WriteByte('-')
			}
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-_")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-_")
	}
	if out == "" {
		out = "devvm"
	}
	return out
}

// guestChar reports whether c may appear in a guest mount point (it is
// written into dev-vm.scm and into mount options unquoted).
func guestChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+@", c)
}

func describeChar(c rune) string {
	switch c {
	case ' ':
		return "a space"
	case ',':
		return "a comma"
	case '"', '\'', '`':
		return "a quote"
	}
	return fmt.Sprintf("the character %q", c)
}

// Guest directories a share may not hide.
var (
	reservedGuest      = []string{"/bin", "/boot", "/etc", "/home", "/lib", "/root", "/sbin", "/tmp", "/usr", "/var"}
	reservedGuestTrees = []string{"/gnu", "/proc", "/sys", "/dev", "/run"}
)

func checkGuest(g string) string {
	if !strings.HasPrefix(g, "/") {
		return fmt.Sprintf("%q is not an absolute path: write where the share appears in the guest, e.g. \"/mnt/data\"", g)
	}
	for _, c := range g {
		if !guestChar(c) {
			return fmt.Sprintf("%q contains %s: the guest mount point is written into dev-vm.scm and into mount options, so use only letters, digits and / . _ - + @ (the host path may contain anything)", g, describeChar(c))
		}
	}
	if filepath.Clean(g) != g {
		return fmt.Sprintf("%q is not a clean path: write it as %q", g, filepath.Clean(g))
	}
	if g == "/" {
		return "\"/\" is the guest's root: mount the share at /mnt/data or /srv/data"
	}
	instead := fmt.Sprintf("mount the share at /mnt/%[1]s or /srv/%[1]s", path.Base(g))
	for _, r := range reservedGuest {
		if g == r {
			return fmt.Sprintf("%q would hide a system directory of the guest: %s", g, instead)
		}
	}
	for _, r := range reservedGuestTrees {
		if g == r || strings.HasPrefix(g, r+"/") {
			return fmt.Sprintf("%q is inside %s, which the guest system owns: %s", g, r, instead)
		}
	}
	return ""
}

// badText reports a string that cannot be a path or argument.
func badText(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func (v *Vmfile) validate() error {
	if err := ValidateName(v.Name); err != nil {
		return v.KeyError("name", "%v", err)
	}
	switch v.Backend {
	case BackendGuix, BackendMicroVM:
	default:
		return v.KeyError("backend", "%q is not a backend devvm knows: use \"guix\" (the default) or \"microvm\"", v.Backend)
	}
	if v.Memory < 128*MiB {
		return v.KeyError("memory", "%s is too little for a Linux guest: give at least \"128M\" (\"2G\" is a good start)", v.Memory)
	}
	if v.CPUs < 1 || v.CPUs > 256 {
		return v.KeyError("cpus", "%d is out of range: give 1 to 256", v.CPUs)
	}
	if v.defined("disk") && !v.Persistent {
		return v.KeyError("disk", "disk sizes the persistent disk, and this VM is not persistent: set persistent = true, or remove disk")
	}
	if v.Persistent && v.Disk < MinDisk {
		return v.KeyError("disk", "%s is too small for a Guix System disk, which holds the whole system closure: give at least %q (default %q)", v.Disk, MinDisk.String(), DefaultDisk.String())
	}
	if !userRe.MatchString(v.SSH.User) {
		return v.KeyError("ssh.user", "%q is not a valid user name: lower-case letters, digits, '_' and '-', starting with a letter or '_' (default \"dev\")", v.SSH.User)
	}
	if v.SSH.Port < 1 || v.SSH.Port > 65535 {
		return v.KeyError("ssh.port", "%d is out of range: give a TCP port from 1 to 65535, or remove the line to use 10022 (or the next free port)", v.SSH.Port)
	}
	if msg := privilegedPort(v.SSH.Port); msg != "" {
		return v.KeyError("ssh.port", "%s: pick a port from %d up, or remove the line to use %d (or the next free port)", msg, unprivilegedPorts(), DefaultSSHPort)
	}
	for i, k := range v.SSH.AuthorizedKeys {
		if strings.TrimSpace(k) == "" || badText(k) {
			return v.KeyError(fmt.Sprintf("ssh.authorized_keys[%d]", i), "%q is neither a public key file nor a one-line public key", k)
		}
	}
	for _, kv := range [][2]string{{"guix.command", v.Guix.Command}, {"guix.config", v.Guix.Config}, {"guix.channels", v.Guix.Channels}, {"guix.manifest", v.Guix.Manifest}} {
		if badText(kv[1]) {
			return v.KeyError(kv[0], "%q contains a control character", kv[1])
		}
	}
	for i, d := range v.Guix.LoadPath {
		if strings.TrimSpace(d) == "" || badText(d) {
			return v.KeyError(fmt.Sprintf("guix.load_path[%d]", i), "%q is not a directory name: give a directory of Guile modules, relative to the checkout (e.g. \".guix/modules\") or absolute", d)
		}
	}
	if err := v.validateShares(); err != nil {
		return err
	}
	if err := v.validateForwards(); err != nil {
		return err
	}
	if v.Backend == BackendMicroVM && (v.MicroVM == nil || len(v.MicroVM.Machines) == 0) {
		e := v.KeyError("microvm.machines", "backend \"microvm\" needs at least one [microvm.machines.NAME] table with the VM's address")
		if e.Line == 0 {
			b := v.KeyError("backend", "")
			e.Line, e.Path = b.Line, b.Path
		}
		return e
	}
	if v.MicroVM != nil {
		return v.validateMicroVM()
	}
	return nil
}

func (v *Vmfile) validateShares() error {
	guests, tags := map[string]int{}, map[string]int{}
	for i, s := range v.Shares {
		k := fmt.Sprintf("share[%d]", i)
		if s.Guest == "" {
			return v.missing(k, "guest", "missing: say where the share is mounted in the guest, e.g. guest = \"/mnt/data\"")
		}
		if msg := checkGuest(s.Guest); msg != "" {
			return v.KeyError(k+".guest", "%s", msg)
		}
		if home := "/home/" + v.SSH.User; s.Guest == home || strings.HasPrefix(s.Guest, home+"/") {
			return v.KeyError(k+".guest", "%q is in %s, the home of ssh.user %q: Guix mounts shares before it creates home directories, so the home would be left owned by root without its .bashrc, and devvm's SSH commands (sudo, halt, ssh-mode shares) would fail; mount the share at %s or %s instead", s.Guest, home, v.SSH.User, "/mnt/"+path.Base(s.Guest), "/srv/"+path.Base(s.Guest))
		}
		if j, dup := guests[s.Guest]; dup {
			return v.KeyError(k+".guest", "%q is already the mount point of share[%d]: give each share its own guest path", s.Guest, j)
		}
		guests[s.Guest] = i
		if !tagRe.MatchString(s.Tag) {
			return v.KeyError(k+".tag", "%q is not a valid 9p mount tag: letters, digits, '_' and '-', starting with a letter or digit, at most 31", s.Tag)
		}
		if j, dup := tags[s.Tag]; dup {
			return v.KeyError(k+".tag", "%q is already the tag of share[%d]: give each share its own tag", s.Tag, j)
		}
		tags[s.Tag] = i
		if s.Mode != ShareVirtio && s.Mode != ShareSSH {
			return v.KeyError(k+".mode", "%q is not a share mode: use \"virtio\" (QEMU serves it) or \"ssh\" (devvm serves it over SSH)", s.Mode)
		}
		if strings.ContainsRune(s.Host, 0) {
			return v.KeyError(k+".host", "contains a NUL byte")
		}
		abs := v.Resolve(s.Host)
		where := fmt.Sprintf("%q", s.Host)
		if abs != s.Host {
			where = fmt.Sprintf("%q (%s)", s.Host, abs)
		}
		st, err := os.Stat(abs)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return v.KeyError(k+".host", "%s: %v: the share's host directory must exist; create it or fix the path", where, err)
		}
		if !st.IsDir() {
			return v.KeyError(k+".host", "%s is not a directory: share a directory", where)
		}
	}
	return nil
}

func (v *Vmfile) validateForwards() error {
	used := map[string]string{"tcp/" + strconv.Itoa(v.SSH.Port): "ssh.port"}
	for i, f := range v.Forwards {
		k := fmt.Sprintf("forward[%d]", i)
		for _, p := range []struct {
			key  string
			port int
		}{{"host", f.Host}, {"guest", f.Guest}} {
			if p.port == 0 && !v.defined(k+"."+p.key) {
				return v.missing(k, p.key, "missing: give the %s port, e.g. %s = 8080", p.key, p.key)
			}
			if p.port < 1 || p.port > 65535 {
				return v.KeyError(k+"."+p.key, "%d is out of range: give a port from 1 to 65535", p.port)
			}
		}
		if msg := privilegedPort(f.Host); msg != "" {
			return v.KeyError(k+".host", "%s: pick a host port from %d up (e.g. %d); the guest port can stay %d", msg, unprivilegedPorts(), 8000+f.Host, f.Guest)
		}
		if f.Proto != "tcp" && f.Proto != "udp" {
			return v.KeyError(k+".proto", "%q is not a protocol: use \"tcp\" (the default) or \"udp\"", f.Proto)
		}
		if !isIPv4(f.Bind) {
			return v.KeyError(k+".bind", "%q is not an IPv4 address: QEMU's user network forwards IPv4 only (default 127.0.0.1; \"0.0.0.0\" for all interfaces)", f.Bind)
		}
		pk := f.Proto + "/" + strconv.Itoa(f.Host)
		if prev, dup := used[pk]; dup {
			return v.KeyError(k+".host", "%s port %d is already taken by %s: pick another host port", f.Proto, f.Host, prev)
		}
		used[pk] = k + ".host"
	}
	return nil
}

func isIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || p != strconv.Itoa(n) {
			return false
		}
	}
	return true
}

func (v *Vmfile) validateMicroVM() error {
	m := v.MicroVM
	if badText(m.Flake) {
		return v.KeyError("microvm.flake", "%q contains a control character", m.Flake)
	}
	names := make([]string, 0, len(m.Machines))
	for name := range m.Machines {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		mc := m.Machines[name]
		k := joinKey("microvm.machines", name)
		if !nameRe.MatchString(name) {
			return v.KeyError(k, "%q is not a valid machine name: use lower-case letters, digits, '-' and '_', like vm1", name)
		}
		if !configRe.MatchString(mc.Config) {
			return v.KeyError(k+".config", "%q is not a nixosConfigurations name devvm can pass to nix: letters, digits, '_' and '-'", mc.Config)
		}
		if mc.Address == "" {
			return v.missing(k, "address", "missing: give the guest's address, e.g. address = \"10.1.0.2\" (127.0.0.1 for a local VM)")
		}
		if !isIPv4(mc.Address) && !hostRe.MatchString(mc.Address) && !isIPv6(mc.Address) {
			return v.KeyError(k+".address", "%q is neither an IP address nor a host name", mc.Address)
		}
		if !userRe.MatchString(mc.User) {
			return v.KeyError(k+".user", "%q is not a valid user name", mc.User)
		}
		if mc.Port < 1 || mc.Port > 65535 {
			return v.KeyError(k+".port", "%d is out of range: give the guest's SSH port from 1 to 65535 (default 22)", mc.Port)
		}
		if badText(mc.IdentityFile) {
			return v.KeyError(k+".identity_file", "%q contains a control character", mc.IdentityFile)
		}
	}
	r := m.Remote
	if r == nil {
		return nil
	}
	if r.Destination == "" {
		return v.missing("microvm.remote", "destination", "missing: give the hypervisor as user@host (or host, or user@host:port)")
	}
	if !destRe.MatchString(r.Destination) {
		return v.KeyError("microvm.remote.destination", "%q is not user@host[:port]: e.g. \"root@hypervisor\"", r.Destination)
	}
	if r.Checkout == "" {
		return v.missing("microvm.remote", "checkout", "missing: give the absolute path of the checkout on the hypervisor, e.g. \"/root/project\"")
	}
	if !strings.HasPrefix(r.Checkout, "/") || badText(r.Checkout) {
		return v.KeyError("microvm.remote.checkout", "%q is not an absolute path on the hypervisor", r.Checkout)
	}
	if r.Sync != "git-pull" && r.Sync != "copy" {
		return v.KeyError("microvm.remote.sync", "%q: use \"git-pull\" (the hypervisor pulls; the default) or \"copy\" (devvm pushes the flake)", r.Sync)
	}
	for _, kv := range [][2]string{{"microvm.remote.identity_file", r.IdentityFile}, {"microvm.remote.known_hosts", r.KnownHosts}} {
		if badText(kv[1]) {
			return v.KeyError(kv[0], "%q contains a control character", kv[1])
		}
	}
	return nil
}

func isIPv6(s string) bool { return strings.Contains(s, ":") && net.ParseIP(s) != nil }

// Resolve returns p made absolute against the checkout, with ~ expanded.
func (v *Vmfile) Resolve(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(v.Dir, p)
}
