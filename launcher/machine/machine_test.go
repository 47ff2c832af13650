package machine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/sshx/sshtest"
	"github.com/devvm/devvm/launcher/state"
	"github.com/devvm/devvm/launcher/vmfile"
	"golang.org/x/crypto/ssh"
)

// fakeDriver drives a "VM" that is a local sleep process carrying the
// machine's marker, with an in-process SSH server (sshtest) as its sshd: the
// whole lifecycle runs with no VM and no network. Its power-off command,
// run by that server, kills the process, as a guest powering off ends QEMU.
type fakeDriver struct {
	t      *testing.T
	sshd   *sshtest.Server
	env    *hostenv.Env
	mu     sync.Mutex
	script string // the process's shell script (default: sleep)
	cmds   []*exec.Cmd
	builds int
	starts int
	stops  []Stop
	probe  Verdict
	power  string // PowerOffCommand ("" = kill the process)
}

func (f *fakeDriver) Kind() string       { return "fake" }
func (f *fakeDriver) Machines() []string { return []string{"vm"} }
func (f *fakeDriver) Identity(m *Machine) (string, string) {
	return m.VM.Marker(), ""
}
func (f *fakeDriver) Probe(ctx context.Context, m *Machine, rec *Record) Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.probe.State == "" {
		return Verdict{State: backend.Running}
	}
	return f.probe
}
func (f *fakeDriver) Preflight(ctx context.Context, m *Machine) error { return nil }
func (f *fakeDriver) Build(ctx context.Context, m *Machine, prev *Build, opts backend.BuildOptions) (*Build, error) {
	if prev != nil && !opts.Rebuild {
		return prev, nil
	}
	f.builds++
	return &Build{Key: fmt.Sprintf("key%d", f.builds), Artifact: "/fake/artifact", Changed: true}, nil
}
func (f *fakeDriver) Start(ctx context.Context, m *Machine, b *Build, fg bool) (*Record, error) {
	f.starts++
	script := f.script
	if script == "" {
		script = "sleep 600"
	}
	cmd := exec.Command("sh", "-c", script+"; :", m.VM.Marker())
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go cmd.Wait()
	f.cmds = append(f.cmds, cmd)
	f.t.Cleanup(func() { cmd.Process.Kill() })
	var id proc.Identity
	var err error
	for i := 0; i < 100; i++ {
		if id, err = proc.Capture(cmd.Process.Pid, m.VM.Marker(), ""); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	os.WriteFile(m.VM.ConsoleLog(), []byte("boot "+fmt.Sprint(f.starts)+"\n"), 0o600)
	host, port, _ := strings.Cut(f.sshd.Addr, ":")
	var p int
	fmt.Sscan(port, &p)
	return &Record{Process: &id, SSHHost: host, SSHPort: p, BuildKey: b.Key, Artifact: b.Artifact}, nil
}
func (f *fakeDriver) Target(m *Machine, rec *Record) (*sshx.Target, error) {
	k, err := sshx.EnsureUserKey(f.env.DataDir)
	if err != nil {
		return nil, err
	}
	return &sshx.Target{Addr: fmt.Sprintf("%s:%d", rec.SSHHost, rec.SSHPort), User: "dev", Key: k,
		KnownHosts: m.VM.KnownHosts(), HostKeyAlias: sshx.HostAlias(m.Name), HandshakeTimeout: 2 * time.Second}, nil
}
func (f *fakeDriver) SSHConfig(m *Machine, rec *Record) (string, error) {
	return "Host " + sshx.HostAlias(m.Name) + "\n", nil
}
func (f *fakeDriver) Outdated(ctx context.Context, m *Machine, rec *Record) string { return "" }
func (f *fakeDriver) Stops(m *Machine, rec *Record) []Stop                         { return f.stops }
func (f *fakeDriver) Clean(ctx context.Context, m *Machine) error                  { return nil }
func (f *fakeDriver) GC(ctx context.Context, ts []GCTarget, opts backend.GCOptions) (*backend.GCReport, error) {
	return &backend.GCReport{FreedBytes: -1}, nil
}
func (f *fakeDriver) PowerOffCommand() string {
	if f.power != "" {
		return f.power
	}
	return fmt.Sprintf("kill %d", f.cmds[len(f.cmds)-1].Process.Pid)
}

// syncBuf is a concurrency-safe UI sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newFake(t *testing.T) (*Manager, *fakeDriver, *syncBuf) {
	t.Helper()
	base := t.TempDir()
	env := hostenv.FromOS()
	env.DataDir, env.StateDir, env.RuntimeDir, env.GCRootsDir = filepath.Join(base, "data"), filepath.Join(base, "state"), filepath.Join(base, "rt"), ""
	key, err := sshx.EnsureUserKey(env.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	sshd := sshtest.Start(t, sshtest.Options{Authorized: []ssh.PublicKey{key.Signer.PublicKey()}})
	checkout := filepath.Join(base, "checkout")
	os.Mkdir(checkout, 0o755)
	vf := vmfile.Default(checkout)
	vf.BootTimeout = vmfile.Duration(5 * time.Second)
	d := &fakeDriver{t: t, sshd: sshd, env: env}
	out := &syncBuf{}
	return New(d, vf, env, &backend.UI{Err: out}), d, out
}

func mustStatus(t *testing.T, mg *Manager) backend.Status {
	t.Helper()
	sts, err := mg.Status(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sts[0]
}

// TestLifecycle: up records and pins, a second up starts nothing, halt
// powers the guest off over SSH and returns once its process has exited.
func TestLifecycle(t *testing.T) {
	mg, d, out := newFake(t)
	ctx := context.Background()
	if err := mg.Up(ctx, nil, backend.UpOptions{}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	m := mg.ms["vm"]
	if s := mustStatus(t, mg); s.State != backend.Running || s.PID != d.cmds[0].Process.Pid {
		t.Fatalf("status after up: %+v", s)
	}
	for _, f := range []string{m.VM.KnownHosts(), m.VM.SSHConfig(), m.VM.Record(), m.VM.BuildRecord()} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v (want a private file)", f, st, err)
		}
	}
	if es, _ := state.OpenRegistry(mg.env.StateDir).List(); len(es) != 1 || es[0].Name != "vm" {
		t.Errorf("registry: %v", es)
	}
	if err := mg.Up(ctx, nil, backend.UpOptions{}); err != nil || d.starts != 1 || d.builds != 1 {
		t.Fatalf("second up: %v (starts %d builds %d)", err, d.starts, d.builds)
	}
	pid := d.cmds[0].Process.Pid
	if err := mg.Halt(ctx, nil, backend.HaltOptions{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "guest powered off over SSH") {
		t.Errorf("halt did not use the guest's power-off:\n%s", out)
	}
	if !proc.Exited(proc.Identity{PID: pid, StartTicks: mg.mustNotRecord(t, m)}) {
		t.Errorf("halt returned while the process still runs")
	}
	if s := mustStatus(t, mg); s.State != backend.Stopped {
		t.Errorf("status after halt: %+v", s)
	}
}

// mustNotRecord checks the record is gone and returns a start-ticks value
// no process has, so Exited checks only the pid.
func (mg *Manager) mustNotRecord(t *testing.T, m *Machine) uint64 {
	t.Helper()
	if _, err := os.Stat(m.VM.Record()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record left after halt: %v", err)
	}
	return 0
}

// TestLockContention: a second command on a busy machine fails at once.
func TestLockContention(t *testing.T) {
	mg, _, _ := newFake(t)
	lk, err := mg.ms["vm"].VM.Lock("devvm up")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	start := time.Now()
	for _, op := range []func() error{
		func() error { return mg.Up(context.Background(), nil, backend.UpOptions{}) },
		func() error { return mg.Halt(context.Background(), nil, backend.HaltOptions{}) },
		func() error { return mg.Destroy(context.Background(), nil, backend.DestroyOptions{Yes: true}) },
	} {
		if err := op(); !errors.Is(err, state.ErrBusy) {
			t.Errorf("command on a locked machine: %v", err)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("busy commands waited")
	}
}

// TestStaleRecord: a record whose process died is reported stopped and
// cleaned, and the process at a reused pid is never touched.
func TestStaleRecord(t *testing.T) {
	mg, d, out := newFake(t)
	if err := mg.Up(context.Background(), nil, backend.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	d.cmds[0].Process.Kill()
	time.Sleep(100 * time.Millisecond)
	s := mustStatus(t, mg)
	if s.State != backend.Stopped || !strings.Contains(s.Reason, "stale record cleaned") {
		t.Errorf("status of a dead VM: %+v", s)
	}
	if _, err := os.Stat(mg.ms["vm"].VM.Record()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale record kept")
	}
	// A record naming a live process that is not the machine's.
	other := exec.Command("sleep", "60")
	other.Start()
	defer other.Process.Kill()
	id, _ := proc.Capture(other.Process.Pid, "sleep", "")
	mg.save(mg.ms["vm"], &Record{Process: &id, Ready: true})
	if err := mg.Halt(context.Background(), nil, backend.HaltOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cleaned a stale record") {
		t.Errorf("halt of a record naming another process:\n%s", out)
	}
	if proc.Exited(proc.Identity{PID: other.Process.Pid, StartTicks: id.StartTicks, BootID: id.BootID}) {
		t.Fatalf("halt signalled a process that is not the machine's")
	}
}

// TestHaltEscalation: every graceful rung fails, the process ignores
// SIGTERM; halt ends in SIGKILL within its bound, and not before the
// process is gone.
func TestHaltEscalation(t *testing.T) {
	mg, d, out := newFake(t)
	d.script = "trap '' TERM; while :; do sleep 0.1; done"
	d.power = "echo cannot >&2; exit 1"
	var tried []string
	d.stops = []Stop{
		{Name: "first stop", Do: func(context.Context) error { tried = append(tried, "first"); return errors.New("refused") }},
		{Name: "second stop", Reserve: 1500 * time.Millisecond, Do: func(context.Context) error { tried = append(tried, "second"); return nil }},
	}
	if err := mg.Up(context.Background(), nil, backend.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	id := *mustRecord(t, mg).Process
	start := time.Now()
	if err := mg.Halt(context.Background(), nil, backend.HaltOptions{Timeout: 4 * time.Second}); err != nil {
		t.Fatalf("halt: %v\n%s", err, out)
	}
	took := time.Since(start)
	if !proc.Exited(id) {
		t.Fatalf("halt returned while the process runs")
	}
	for _, want := range []string{"graceful halt over SSH failed", "first stop failed", "process killed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("halt output lacks %q:\n%s", want, out)
		}
	}
	if strings.Join(tried, ",") != "first,second" {
		t.Errorf("stops tried: %v", tried)
	}
	if took > 8*time.Second {
		t.Errorf("halt with a 4 s bound took %s", took)
	}
}

// TestForceSkipsGraceful: -f goes to signals at once.
func TestForceSkipsGraceful(t *testing.T) {
	mg, d, out := newFake(t)
	called := false
	d.stops = []Stop{{Name: "acpi", Do: func(context.Context) error { called = true; return nil }}}
	if err := mg.Up(context.Background(), nil, backend.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := mg.Halt(context.Background(), nil, backend.HaltOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if called || !strings.Contains(out.String(), "SIGTERM") {
		t.Errorf("halt -f: stop called %v\n%s", called, out)
	}
}

func mustRecord(t *testing.T, mg *Manager) *Record {
	t.Helper()
	rec, err := readRecord(mg.ms["vm"])
	if err != nil || rec == nil {
		t.Fatalf("no record: %v", err)
	}
	return rec
}

// TestReadinessTimeout: a guest whose sshd never answers fails up with the
// console tail and the next steps; the VM is left running and halt stops it.
func TestReadinessTimeout(t *testing.T) {
	mg, d, _ := newFake(t)
	d.sshd.Close()
	mg.vf.BootTimeout = vmfile.Duration(1500 * time.Millisecond)
	err := mg.Up(context.Background(), nil, backend.UpOptions{})
	if err == nil || !strings.Contains(err.Error(), "did not accept SSH within 1.5s") || !strings.Contains(err.Error(), "boot 1") ||
		!strings.Contains(err.Error(), "devvm halt") {
		t.Fatalf("up of a guest without sshd: %v", err)
	}
	if s := mustStatus(t, mg); s.State != backend.Starting {
		t.Errorf("status: %+v", s)
	}
	if err := mg.Halt(context.Background(), nil, backend.HaltOptions{Timeout: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
}

// TestLoginRefused: an sshd that answers but refuses devvm's key is said so
// at once, with the keys tried, and status shows it (not "starting").
func TestLoginRefused(t *testing.T) {
	mg, d, _ := newFake(t)
	*d.sshd = *sshtest.Start(t, sshtest.Options{})
	start := time.Now()
	err := mg.Up(context.Background(), nil, backend.UpOptions{})
	if err == nil || !strings.Contains(err.Error(), "refuses devvm's login") || !strings.Contains(err.Error(), "id_ed25519") {
		t.Fatalf("up with a refused key: %v", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("a refused login waited for the boot timeout (%s)", time.Since(start))
	}
	s := mustStatus(t, mg)
	if s.State != backend.Broken || !strings.Contains(s.Reason, "refuses devvm's login") || !strings.Contains(s.Hint, "authorize") {
		t.Errorf("status of a VM that refuses the key: %+v", s)
	}
}

// TestDestroyHalfStarted: a VM whose boot never finished is destroyed
// completely; a persistent disk needs --yes off a terminal.
func TestDestroyHalfStarted(t *testing.T) {
	mg, d, _ := newFake(t)
	d.sshd.Close()
	mg.vf.BootTimeout = vmfile.Duration(time.Second)
	mg.Up(context.Background(), nil, backend.UpOptions{})
	m := mg.ms["vm"]
	os.WriteFile(m.VM.Disk("key1"), []byte("guest data"), 0o600)
	err := mg.Destroy(context.Background(), nil, backend.DestroyOptions{})
	if err == nil || !strings.Contains(err.Error(), "--yes") || !strings.Contains(err.Error(), "persistent disk") {
		t.Fatalf("destroy without --yes off a terminal: %v", err)
	}
	if _, err := os.Stat(m.VM.Disk("key1")); err != nil {
		t.Fatalf("a refused destroy deleted the disk")
	}
	id := *mustRecord(t, mg).Process
	if err := mg.Destroy(context.Background(), nil, backend.DestroyOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	if !proc.Exited(id) {
		t.Errorf("destroy left the process running")
	}
	for _, p := range []string{m.VM.Root(), m.VM.RuntimeDir()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after destroy", p)
		}
	}
	if es, _ := state.OpenRegistry(mg.env.StateDir).List(); len(es) != 0 {
		t.Errorf("registry after destroy: %v", es)
	}
}

// TestFollowAcrossReboot: logs -f goes on across a new boot that replaces or
// truncates the console log, and waits for a first boot.
func TestFollowAcrossReboot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	done := make(chan error, 1)
	go func() {
		done <- followFile(ctx, path, backend.LogOptions{Follow: true}, &out, func() bool { return true })
	}()
	wait := func(want string) {
		t.Helper()
		for i := 0; i < 100 && !strings.Contains(out.String(), want); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("followed output lacks %q: %q", want, out.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	os.WriteFile(path, []byte("first boot line 1\n"), 0o600)
	wait("first boot line 1")
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("first boot line 2, a long one that makes the file longer\n")
	f.Close()
	wait("line 2")
	// A new boot replaces the file (a new inode, shorter content).
	os.Remove(path)
	os.WriteFile(path, []byte("second\n"), 0o600)
	wait("second")
	// A new boot truncating in place.
	os.WriteFile(path, []byte("3rd\n"), 0o600)
	wait("3rd")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMigrateLegacy: an old .devvm in the checkout is taken over: links in it
// are never followed, a disk moves, records are dropped, and it is removed.
func TestMigrateLegacy(t *testing.T) {
	mg, _, out := newFake(t)
	legacy := filepath.Join(mg.vf.Dir, ".devvm", "vm")
	os.MkdirAll(legacy, 0o755)
	sentinel := filepath.Join(t.TempDir(), "sentinel")
	os.WriteFile(sentinel, []byte("keep"), 0o600)
	os.Symlink(sentinel, filepath.Join(legacy, "lock"))
	os.Symlink(sentinel, filepath.Join(legacy, "disk-linked.qcow2"))
	os.WriteFile(filepath.Join(legacy, "disk-abc.qcow2"), []byte("guest data"), 0o644)
	os.WriteFile(filepath.Join(legacy, "build.json"), []byte(`{"key":"x","run_vm":"/tmp/evil"}`), 0o644)
	os.WriteFile(filepath.Join(legacy, "runtime.json"), []byte(`{"identity":{"pid":1}}`), 0o644)
	if _, err := mg.Status(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	m := mg.ms["vm"]
	if _, err := os.Lstat(filepath.Join(mg.vf.Dir, ".devvm")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".devvm left in the checkout:\n%s", out)
	}
	if b, _ := os.ReadFile(m.VM.Disk("abc")); string(b) != "guest data" {
		t.Errorf("persistent disk not moved: %q", b)
	}
	if st, _ := os.Stat(m.VM.Disk("abc")); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("moved disk mode: %v", st)
	}
	if _, err := os.Lstat(m.VM.Path("disk-linked.qcow2")); err == nil {
		t.Errorf("a linked disk was taken over")
	}
	if _, err := os.Stat(m.VM.BuildRecord()); err == nil {
		t.Errorf("a build record from the checkout was trusted")
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "keep" {
		t.Errorf("migration wrote through a link")
	}
	// After the first use, a .devvm in the checkout (the guest's doing) is
	// never read: a forged record in it changes nothing.
	os.MkdirAll(legacy, 0o755)
	os.WriteFile(filepath.Join(legacy, "disk-new.qcow2"), []byte("planted"), 0o644)
	mg.Status(context.Background(), nil)
	if _, err := os.Stat(m.VM.Disk("new")); err == nil {
		t.Errorf("a disk planted after the first use was taken in")
	}
	// A .devvm that is itself a link, at a first use, is removed; its
	// target is untouched.
	mg2, _, _ := newFake(t)
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "x"), nil, 0o600)
	os.Symlink(target, filepath.Join(mg2.vf.Dir, ".devvm"))
	mg2.Status(context.Background(), nil)
	if _, err := os.Lstat(filepath.Join(mg2.vf.Dir, ".devvm")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a linked .devvm was kept")
	}
	if _, err := os.Stat(filepath.Join(target, "x")); err != nil {
		t.Errorf("the target of a linked .devvm was touched")
	}
}

var _ io.Writer = (*syncBuf)(nil)

// TestStopOrphans: with the Vmfile broken, halt and destroy still stop the
// recorded process of the checkout's VM (and only that one).
func TestStopOrphans(t *testing.T) {
	mg, _, out := newFake(t)
	if err := mg.Up(context.Background(), nil, backend.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	id := *mustRecord(t, mg).Process
	n, err := StopOrphans(context.Background(), mg.env, mg.ui, "/some/other/checkout", time.Second, true)
	if err != nil || n != 0 || proc.Exited(id) {
		t.Fatalf("another checkout's orphans: %d %v", n, err)
	}
	n, err = StopOrphans(context.Background(), mg.env, mg.ui, mg.vf.Dir, 3*time.Second, true)
	if err != nil || n != 1 {
		t.Fatalf("StopOrphans: %d %v\n%s", n, err, out)
	}
	if !proc.Exited(id) {
		t.Errorf("the orphan still runs")
	}
	if _, err := os.Stat(mg.ms["vm"].VM.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("destroy of an orphan left its state")
	}
}
