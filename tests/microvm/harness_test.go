//go:build e2e

// Package microvmtest is the end-to-end test of devvm's microvm.nix backend:
// a real OpenSSH sshd on 127.0.0.1 plays the hypervisor, with stand-ins for
// microvm, systemctl, journalctl and nix (tests/microvm/standin) on a fake
// root, and the tiny real QEMU guest of tests/guest as every VM.
//
//	go test -tags e2e -count=1 -v ./tests/microvm/
package microvmtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/backends"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/machine"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
	"golang.org/x/crypto/ssh"
)

// need skips (or, with CI=true, fails) when the environment cannot run the test.
func need(t *testing.T) {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		miss("needs root (sshd on a test port, git, the fake root)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "jq", "socat", "git", "setsid", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			miss(tool + " is not installed (apt-get install qemu-system-x86 jq socat git util-linux openssh-client)")
		}
	}
	// The stand-in nix hands `nix eval --apply` expressions to the real evaluator.
	if _, err := exec.LookPath("nix"); err != nil {
		miss("nix is not installed (apt-get install nix-bin)")
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		miss("/usr/sbin/sshd is missing (apt-get install openssh-server)")
	}
}

// uiBuf collects progress output and mirrors it to the test log.
type uiBuf struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (u *uiBuf) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.b.Write(p)
	u.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Take returns and clears what was written.
func (u *uiBuf) Take() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.b.String()
	u.b.Reset()
	return s
}

var (
	guestOnce            sync.Once
	guestKernel, guestRD string
	guestErr             error
)

func guest(t *testing.T) (string, string) {
	t.Helper()
	guestOnce.Do(func() {
		out, err := exec.Command("../guest/build-guest.sh").Output()
		if err != nil {
			guestErr = fmt.Errorf("tests/guest/build-guest.sh: %v", err)
			return
		}
		for _, l := range strings.Split(string(out), "\n") {
			if k, ok := strings.CutPrefix(l, "KERNEL="); ok {
				guestKernel = k
			}
			if k, ok := strings.CutPrefix(l, "INITRD="); ok {
				guestRD = k
			}
		}
	})
	if guestErr != nil || guestKernel == "" {
		t.Fatalf("cannot build the test guest: %v", guestErr)
	}
	return guestKernel, guestRD
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeKey writes a new ed25519 private key (OpenSSH format, 0600) and returns its signer.
func writeKey(t *testing.T, path string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// world is one test setup: the fake hypervisor root, the flake in git, the
// devvm user's files.
type world struct {
	t        *testing.T
	tmp      string
	root     string // DEVVM_STANDIN_ROOT
	standin  string // tests/microvm/standin
	env      []string
	checkout string // the local checkout (Vmfile, flake)
	hvCheck  string // the hypervisor's checkout
	dataDir  string
	hostEnv  *hostenv.Env
	ui       *uiBuf
	machines map[string]map[string]any
}

func newWorld(t *testing.T) *world {
	t.Helper()
	need(t)
	k, rd := guest(t)
	tmp := t.TempDir()
	standin, err := filepath.Abs("standin")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, tmp: tmp, root: filepath.Join(tmp, "root"), standin: standin,
		checkout: filepath.Join(tmp, "work", "infra"), hvCheck: filepath.Join(tmp, "hv", "infra"),
		dataDir: filepath.Join(tmp, "xdg-data", "devvm"), ui: &uiBuf{t: t}, machines: map[string]map[string]any{}}
	w.env = []string{"DEVVM_STANDIN_ROOT=" + w.root, "DEVVM_STANDIN_BIN=" + standin,
		"DEVVM_MICROVM_STATE_DIR=" + filepath.Join(w.root, "var/lib/microvms"),
		"DEVVM_MICROVM_GCROOTS=" + filepath.Join(w.root, "nix/var/nix/gcroots/microvm"),
		"DEVVM_TEST_KERNEL=" + k, "DEVVM_TEST_INITRD=" + rd}
	env := hostenv.FromOS()
	// The same directories the devvm command derives from XDG_* (cli()).
	env.DataDir, env.StateDir, env.RuntimeDir = w.dataDir, filepath.Join(tmp, "xdg-state", "devvm"), filepath.Join(tmp, "rt", "devvm")
	// The backend runs its own executable as `devvm share-serve`: in this
	// test binary that must be the devvm command instead.
	devvm := devvmBinary(t)
	env.Command = func(ctx context.Context, name string, args ...string) *exec.Cmd {
		if len(args) > 0 && args[0] == "share-serve" {
			name = devvm
		}
		return exec.CommandContext(ctx, name, args...)
	}
	w.hostEnv = env
	t.Cleanup(w.stopAll)
	return w
}

// devvmKey is the authorized line of devvm's own key (the guests must allow it).
func (w *world) devvmKey() string {
	k, err := sshx.EnsureUserKey(w.dataDir)
	if err != nil {
		w.t.Fatal(err)
	}
	return strings.TrimSpace(string(k.AuthorizedLine))
}

// writeFlake writes flake.nix and the stand-in's machine descriptions.
func (w *world) writeFlake(dir string) {
	w.t.Helper()
	os.MkdirAll(dir, 0o755)
	// The stand-in nix builds from devvm-standin.json; the real nix (devvm doctor, init) sees its entries as
	// nixosConfigurations without any configuration inside.
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("# devvm test flake: the stand-in nix reads devvm-standin.json\n"+
		"{ outputs = { self }: { nixosConfigurations = builtins.mapAttrs (n: _: { config = { }; }) (builtins.fromJSON (builtins.readFile ./devvm-standin.json)); }; }\n"), 0o644)
	b, _ := json.MarshalIndent(w.machines, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "devvm-standin.json"), b, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// stopAll stops every VM the stand-in systemd runs (test cleanup).
func (w *world) stopAll() {
	ents, _ := os.ReadDir(filepath.Join(w.root, "run/systemd"))
	for _, e := range ents {
		u := strings.TrimSuffix(e.Name(), ".pid")
		cmd := exec.Command(filepath.Join(w.standin, "systemctl"), "stop", u)
		cmd.Env = append(os.Environ(), w.env...)
		cmd.Run()
	}
}

// unitPID is the pid the stand-in systemd records for a running VM.
func (w *world) unitPID(vm string) string {
	b, _ := os.ReadFile(filepath.Join(w.root, "run/systemd", "microvm@"+vm+".pid"))
	return strings.TrimSpace(string(b))
}

func (w *world) link(vm, name string) string {
	s, _ := os.Readlink(filepath.Join(w.root, "var/lib/microvms", vm, name))
	return s
}

// hypervisor is the test sshd.
type hypervisor struct {
	port       int
	knownHosts string
	authorized string
}

func (w *world) startHypervisor() *hypervisor {
	t := w.t
	t.Helper()
	dir := filepath.Join(w.tmp, "sshd")
	os.MkdirAll(dir, 0o700)
	os.MkdirAll("/run/sshd", 0o755)
	hk := writeKey(t, filepath.Join(dir, "host_key"))
	h := &hypervisor{port: freePort(t), knownHosts: filepath.Join(w.tmp, "known_hosts"), authorized: filepath.Join(dir, "authorized_keys")}
	os.WriteFile(h.authorized, nil, 0o600)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
PermitTTY yes
SetEnv %s
ForceCommand %s
`, h.port, filepath.Join(dir, "host_key"), filepath.Join(dir, "sshd.pid"), h.authorized,
		strings.Join(w.env, " "), filepath.Join(filepath.Dir(w.standin), "hv-session"))
	cfgPath := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	if out, err := exec.Command("/usr/sbin/sshd", "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	// sshd logs to a file: its per-connection children inherit stderr, so a
	// pipe would keep cmd.Wait waiting for connections devvm still holds.
	logPath := filepath.Join(dir, "sshd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgPath)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("sshd log (%s), last lines:\n%s", logPath, lastLines(string(b), 40))
		}
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", h.port))
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("sshd did not listen on %d", h.port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	line := fmt.Sprintf("[127.0.0.1]:%d %s", h.port, ssh.MarshalAuthorizedKey(hk.PublicKey()))
	os.WriteFile(h.knownHosts, []byte(line), 0o600)
	return h
}

func (h *hypervisor) authorize(t *testing.T, s ssh.Signer) {
	f, err := os.OpenFile(h.authorized, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(ssh.MarshalAuthorizedKey(s.PublicKey()))
	f.Close()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// open loads the checkout's Vmfile and returns the microvm backend.
func (w *world) open(dir string) *machine.Manager {
	w.t.Helper()
	vf, err := vmfile.Load(dir)
	if err != nil {
		w.t.Fatalf("load Vmfile: %v", err)
	}
	b, err := backends.ForVmfile(vf, w.hostEnv, &backend.UI{Err: w.ui})
	if err != nil {
		w.t.Fatalf("backends.ForVmfile: %v", err)
	}
	w.t.Cleanup(func() { b.Close() })
	return b
}

// sshRun runs a command in a machine like `devvm ssh NAME -- CMD` does.
func sshRun(t *testing.T, b *machine.Manager, name, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tg, err := b.SSHTarget(ctx, name)
	if err != nil {
		t.Fatalf("SSHTarget(%s): %v", name, err)
	}
	c, err := sshx.Dial(ctx, *tg)
	if err != nil {
		t.Fatalf("ssh %s: %v", name, err)
	}
	defer c.Close()
	var out, errb bytes.Buffer
	code, err := c.Run(ctx, cmd, nil, &out, &errb, false)
	if err != nil || code != 0 {
		t.Fatalf("ssh %s -- %s: status %d, %v: %s", name, cmd, code, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func statusOf(t *testing.T, b *machine.Manager, names ...string) map[string]backend.Status {
	t.Helper()
	st, err := b.Status(context.Background(), names)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	m := map[string]backend.Status{}
	for _, s := range st {
		m[s.Name] = s
	}
	return m
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// devvmBinary builds the devvm command once.
func devvmBinary(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		cliPath = filepath.Join(os.TempDir(), fmt.Sprintf("devvm-microvm-test-%d", os.Getpid()))
		out, err := exec.Command("go", "build", "-o", cliPath, "../../cmd/devvm").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("building devvm: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

// TestMain refuses to run as `share-serve`: a backend that ran this test
// binary instead of devvm would start the whole test suite again.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "share-serve" {
		fmt.Fprintln(os.Stderr, "this is the microvm test binary, not devvm: the test must point the backend at the devvm command")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// cli runs the devvm command itself in dir with the world's directories,
// as a user would.
func (w *world) cli(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	c := exec.Command(devvmBinary(t), args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(w.tmp, "xdg-data"),
		"XDG_STATE_HOME="+filepath.Join(w.tmp, "xdg-state"), "XDG_RUNTIME_DIR="+filepath.Join(w.tmp, "rt"))
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}
