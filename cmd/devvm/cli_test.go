package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/sshx/sshtest"
	"github.com/devvm/devvm/launcher/vmfile"
)

// fake is a backend whose machines are in-process SSH servers running
// real /bin/sh commands on this host (sshtest), so what devvm sends is
// executed, not matched as text.
type fake struct {
	backend.Backend // methods a test does not set panic
	machines        []string
	statuses        []backend.Status
	target          *sshx.Target
	destroyed       *backend.DestroyOptions
	logs            func(backend.LogOptions, io.Writer) error
}

func (f *fake) Kind() string       { return "guix" }
func (f *fake) Machines() []string { return f.machines }
func (f *fake) Status(context.Context, []string) ([]backend.Status, error) {
	return f.statuses, nil
}
func (f *fake) SSHTarget(context.Context, string) (*sshx.Target, error) {
	if f.target == nil {
		return nil, errors.New("not running: `devvm up` starts it")
	}
	t := *f.target
	return &t, nil
}
func (f *fake) Destroy(_ context.Context, _ []string, o backend.DestroyOptions) error {
	f.destroyed = &o
	return nil
}
func (f *fake) Logs(_ context.Context, _ string, o backend.LogOptions, w io.Writer) error {
	return f.logs(o, w)
}

// withSSH gives f a running machine behind an in-process sshd, its host key
// pinned as devvm pins it.
func withSSH(t *testing.T, f *fake) *fake {
	t.Helper()
	srv := sshtest.Start(t, sshtest.Options{})
	dir := t.TempDir()
	key, err := sshx.EnsureUserKey(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Authorize(key.Signer.PublicKey())
	f.target = &sshx.Target{Addr: srv.Addr, User: "dev", Key: key, KnownHosts: filepath.Join(dir, "known_hosts"), HostKeyAlias: "devvm-qbuf"}
	if _, err := sshx.Pin(ctxOf(t), *f.target); err != nil {
		t.Fatal(err)
	}
	return f
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestNormalizeArgs(t *testing.T) {
	app := newApp(hostenv.System())
	for _, c := range []struct{ in, want string }{
		{"status qbuf --json", "status --json qbuf"},
		{"status qbuf --format {{.Name}}", "status --format {{.Name}} qbuf"},
		{"ssh qbuf -t", "ssh -t qbuf"},
		{"ssh qbuf -L 8080:localhost:80 -- top", "ssh -L 8080:localhost:80 -- qbuf -- top"},
		{"ssh -- git log -- README.md", "ssh -- -- git log -- README.md"},
		{"ssh -t -- npm test -- --watch", "ssh -t -- -- npm test -- --watch"},
		{"ssh qbuf -- ls -t", "ssh -- qbuf -- ls -t"},
		{"ssh qbuf ls -la", "ssh qbuf ls -la"}, // refused by ssh, not run
		{"ssh -C /x qbuf", "-C /x ssh qbuf"},
		{"ssh qbuf --debug", "--debug ssh qbuf"},
		{"-C /x status qbuf --json", "-C /x status --json qbuf"},
		{"halt qbuf -f --timeout 10s", "halt -f --timeout 10s qbuf"},
		{"status qbuf --bogus", "status --bogus qbuf"},
		{"cp -- -file :", "cp -- -file :"},
		{"logs qbuf -n 5 -f", "logs -n 5 -f qbuf"},
		{"up", "up"},
	} {
		got := strings.Join(normalizeArgs(app, append([]string{"devvm"}, strings.Fields(c.in)...))[1:], " ")
		if got != c.want {
			t.Errorf("%s → %s, want %s", c.in, got, c.want)
		}
	}
}

// runIn runs devvm in process on test streams.
func runIn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ios, _, out, errOut := hostenv.TestIOStreams()
	code := run(ios, append([]string{"devvm"}, args...))
	return code, out.String(), errOut.String()
}

// checkout makes a checkout with a Vmfile, and private XDG directories.
func checkout(t *testing.T, vmfileText string) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", home+"/d")
	t.Setenv("XDG_STATE_HOME", home+"/s")
	t.Setenv("XDG_RUNTIME_DIR", home+"/r")
	t.Setenv("DEVVM_DIR", "")
	dir := filepath.Join(t.TempDir(), "qbuf")
	os.MkdirAll(filepath.Join(dir, "src", "x"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(vmfileText), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUsageErrorsExit2Briefly(t *testing.T) {
	dir := checkout(t, "")
	for _, args := range [][]string{
		{"frobnicate"},
		{"-C", dir, "status", "--bogus"},
		{"-C", dir, "status", "qbuf", "--jsn"},
		{"-C", dir, "ssh", "qbuf", "ls", "-la"},
		{"-C", dir, "ssh", "ls"},
		{"-C", dir, "ssh", "nosuchvm", "--", "true"},
		{"-C", dir, "ssh", "--"},
		{"-C", dir, "logs", "a", "b"},
		{"-C", dir, "status", "--json", "--format", "{{.Name}}"},
		{"-C", dir, "status", "--format", "{{.Name"},
		{"-C", dir, "cp", "a", "b"},
		{"-C", dir, "cp", "a"},
		{"completion", "tcsh"},
		{"help", "frobnicate"},
		{"init", "--name", "Bad Name!"},
	} {
		code, out, errOut := runIn(t, args...)
		if code != 2 || strings.Contains(out+errOut, "USAGE:") || strings.Count(errOut, "\n") > 2 || !strings.HasPrefix(errOut, "devvm: ") {
			t.Errorf("devvm %s: exit %d, stdout %q, stderr %q; want 2 and a short error", strings.Join(args, " "), code, out, errOut)
		}
	}
	// The order to use is shown.
	if _, _, e := runIn(t, "-C", dir, "ssh", "qbuf", "ls", "-la"); !strings.Contains(e, "devvm ssh qbuf -- ls -la") {
		t.Errorf("ssh without --: %q", e)
	}
	// Flags after arguments work.
	if code, out, e := runIn(t, "-C", dir, "status", "qbuf", "--json"); code != 0 || !strings.Contains(out, `"schema": "devvm/v1"`) {
		t.Errorf("status qbuf --json: %d %q %q", code, out, e)
	}
}

func TestGuestWorkdir(t *testing.T) {
	root := t.TempDir()
	co := filepath.Join(root, "qbuf")
	other := filepath.Join(root, "data")
	for _, d := range []string{co + "/src/x", co + "/vendor/lib", other + "/in", root + "/elsewhere"} {
		os.MkdirAll(d, 0o755)
	}
	os.Symlink(co, root+"/link")
	vf := &vmfile.Vmfile{Name: "qbuf", Dir: co, Shares: []vmfile.Share{
		{Host: ".", Guest: "/mnt/qbuf"}, {Host: other, Guest: "/data"}, {Host: "vendor", Guest: "/opt/vendor"},
	}}
	for dir, want := range map[string]string{
		co:                   "/mnt/qbuf",
		co + "/src/x":        "/mnt/qbuf/src/x",
		co + "/vendor/lib":   "/opt/vendor/lib", // the longest prefix wins
		other + "/in":        "/data/in",
		root + "/elsewhere":  "/mnt/qbuf", // outside every share: the checkout's
		root + "/link/src/x": "/mnt/qbuf/src/x",
	} {
		if got := guestWorkdir(vf, dir); got != want {
			t.Errorf("guestWorkdir(%s) = %q, want %q", dir, got, want)
		}
	}
	vf.Shares = vf.Shares[1:2]
	if got := guestWorkdir(vf, co); got != "/data" {
		t.Errorf("outside the only share: %q", got)
	}
	vf.Shares = nil
	if got := guestWorkdir(vf, co); got != "" {
		t.Errorf("no share: %q, want the home", got)
	}
}

// The guest command runs in the workdir with its words exactly as given.
func TestSSHRunsExactArgvInWorkdir(t *testing.T) {
	f := withSSH(t, &fake{machines: []string{"qbuf"}})
	wd := t.TempDir()
	ios, _, out, errOut := hostenv.TestIOStreams()
	words := []string{"a b", "$HOME", "'q'", "--", "", "*", "`id`", "--watch"}
	o := &sshOptions{IO: ios, Backend: f, Workdir: wd,
		Args: append([]string{"--", "sh", "-c", `pwd; for a in "$@"; do printf '[%s]' "$a"; done; exit 3`, "sh"}, words...)}
	code, err := runSSH(ctxOf(t), o)
	want := realPath(wd) + "\n[a b][$HOME]['q'][--][][*][`id`][--watch]"
	if err != nil || code != 3 || out.String() != want {
		t.Errorf("runSSH: %d %v\nstdout %q\nwant   %q\nstderr %q", code, err, out, want, errOut)
	}
	// A missing workdir: the command does not run elsewhere.
	ios, _, out, errOut = hostenv.TestIOStreams()
	ran := filepath.Join(t.TempDir(), "ran")
	o = &sshOptions{IO: ios, Backend: f, Workdir: filepath.Join(wd, "nope"), Args: []string{"--", "touch", ran}}
	code, err = runSSH(ctxOf(t), o)
	if err != nil || code != 1 || out.Len() != 0 || !strings.Contains(errOut.String(), "is not a directory in the guest") {
		t.Errorf("missing workdir: %d %v %q %q", code, err, out, errOut)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the command ran outside its workdir")
	}
	// --debug shows the target and the command line.
	ios, _, _, errOut = hostenv.TestIOStreams()
	ios.SetDebug(ios.Err)
	o = &sshOptions{IO: ios, Backend: f, Workdir: wd, Args: []string{"--", "true"}}
	if code, err := runSSH(ctxOf(t), o); code != 0 || err != nil || !strings.Contains(errOut.String(), "debug: ssh dev@"+f.target.Addr) || !strings.Contains(errOut.String(), "debug: guest command line: cd ") {
		t.Errorf("--debug: %d %v %q", code, err, errOut)
	}
}

func TestStatusSchema(t *testing.T) {
	started := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	f := &fake{machines: []string{"vm1", "vm2", "vm3"}, statuses: []backend.Status{
		{Name: "vm1", Backend: "microvm", State: backend.Outdated, Outdated: true, Started: started, PID: 42, Hint: "a & b <c>",
			ShareList:   []backend.ShareStatus{{Host: "/h", Guest: "/mnt/h", Tag: "share0", Mode: "ssh", Server: 7}, {Host: "/g", Guest: "/mnt/g", Mode: "ssh", Problem: "DOWN (server exited)"}},
			ForwardList: []backend.ForwardStatus{{Proto: "tcp", Bind: "127.0.0.1", Host: 8080, Guest: 80}}},
		{Name: "vm2", Backend: "microvm", State: backend.Stopped},
		{Name: "vm3", Backend: "microvm", State: "weird"},
	}}
	ios, _, out, _ := hostenv.TestIOStreams()
	if err := runStatus(ctxOf(t), &statusOptions{IO: ios, Backend: f, Output: output{JSON: true}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "a & b <c>") {
		t.Errorf("HTML-escaped: %s", out)
	}
	var got struct {
		Schema   string
		Machines []map[string]any
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Schema != Schema || len(got.Machines) != 3 {
		t.Fatalf("%v %s", err, out)
	}
	m1, m2, m3 := got.Machines[0], got.Machines[1], got.Machines[2]
	if m1["state"] != "running" || m1["outdated"] != true || m1["started"] != "2026-12-03T17:00:00Z" {
		t.Errorf("vm1: %v", m1)
	}
	if sh := m1["shares"].([]any)[0].(map[string]any); sh["guest"] != "/mnt/h" || sh["mode"] != "ssh" || sh["server_pid"] != 7.0 {
		t.Errorf("vm1 shares: %v", m1["shares"])
	}
	if sh := m1["shares"].([]any)[1].(map[string]any); sh["problem"] != "DOWN (server exited)" {
		t.Errorf("vm1's broken share: %v", sh)
	}
	if fw := m1["forwards"].([]any)[0].(map[string]any); fw["host"] != 8080.0 || fw["guest"] != 80.0 || fw["proto"] != "tcp" {
		t.Errorf("vm1 forwards: %v", m1["forwards"])
	}
	if _, ok := m2["started"]; ok || m2["state"] != "stopped" || m2["outdated"] != false {
		t.Errorf("vm2: %v", m2)
	}
	if m3["state"] != "broken" || !strings.Contains(m3["reason"].(string), "weird") {
		t.Errorf("vm3: %v", m3)
	}
	for _, m := range got.Machines {
		if !slices.Contains(States, m["state"].(string)) {
			t.Errorf("state %v outside %v", m["state"], States)
		}
	}
	// --format with Go templates over the same fields.
	ios, _, out, _ = hostenv.TestIOStreams()
	if err := runStatus(ctxOf(t), &statusOptions{IO: ios, Backend: f, Output: output{Format: "{{.Name}} {{.State}} {{.Outdated}} {{json .Forwards}}"}}); err != nil {
		t.Fatal(err)
	}
	want := "vm1 running true [{\"proto\":\"tcp\",\"bind\":\"127.0.0.1\",\"host\":8080,\"guest\":80}]\nvm2 stopped false []\nvm3 broken false []\n"
	if out.String() != want {
		t.Errorf("--format:\n%s\nwant\n%s", out, want)
	}
	ios, _, out, _ = hostenv.TestIOStreams()
	if err := runStatus(ctxOf(t), &statusOptions{IO: ios, Backend: f, Output: output{Format: "{{.Nmae}}"}}); err == nil {
		t.Errorf("a template naming no field printed %q", out)
	}
}

func TestLogsWaitsForFirstBoot(t *testing.T) {
	f := &fake{machines: []string{"qbuf"}, logs: func(o backend.LogOptions, w io.Writer) error {
		if !o.Follow {
			return backend.ErrNoLog
		}
		o.WaitingForBoot()
		io.WriteString(w, "booted\n")
		return nil
	}}
	ios, _, out, errOut := hostenv.TestIOStreams()
	if err := runLogs(ctxOf(t), &logsOptions{IO: ios, Backend: f, Name: "qbuf", Follow: true}); err != nil || out.String() != "booted\n" || !strings.Contains(errOut.String(), "waiting for its first boot") {
		t.Errorf("logs -f: %v %q %q", err, out, errOut)
	}
	ios, _, _, _ = hostenv.TestIOStreams()
	if err := runLogs(ctxOf(t), &logsOptions{IO: ios, Backend: f, Name: "qbuf"}); err == nil || !strings.Contains(err.Error(), "logs -f") {
		t.Errorf("logs before the first boot: %v", err)
	}
}

func TestInitChecks(t *testing.T) {
	dir := checkout(t, "")
	sub := filepath.Join(dir, "src", "x")
	code, _, e := runIn(t, "-C", sub, "init")
	if code != 1 || !strings.Contains(e, filepath.Join(dir, "Vmfile")+" already describes") {
		t.Errorf("init below a Vmfile: %d %q", code, e)
	}
	if _, err := os.Stat(filepath.Join(sub, "Vmfile")); err == nil {
		t.Error("init below a Vmfile wrote one")
	}
	if code, _, e := runIn(t, "init", "-C", sub, "--name", "Bad Name!"); code != 2 || !strings.Contains(e, "bad-name") {
		t.Errorf("init --name 'Bad Name!': %d %q", code, e)
	}
}

func TestVersion(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-03T17:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got := readVersion(info, true).String(); got != "v1.2.3 (rev 0123456789ab, 2026-12-03T17:00:00Z, dirty)" {
		t.Errorf("version from build info: %q", got)
	}
	info.Main.Version = "(devel)"
	if got := readVersion(info, true).Version; got != "(devel)" {
		t.Errorf("a checkout build: %q", got)
	}
	version = "v9"
	defer func() { version = "" }()
	if got := readVersion(info, true).Version; got != "v9" {
		t.Errorf("-ldflags version: %q", got)
	}
	if code, out, _ := runIn(t, "version"); code != 0 || !strings.HasPrefix(out, "devvm v9") {
		t.Errorf("devvm version: %d %q", code, out)
	}
}

// The bash script is sourced by a real bash, which then completes.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := checkout(t, "name = \"qbuf\"\n")
	code, script, e := runIn(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: %d %q", code, e)
	}
	sp := filepath.Join(t.TempDir(), "devvm.bash")
	os.WriteFile(sp, []byte(script), 0o644)
	complete := func(words ...string) []string {
		t.Helper()
		line := `source "$1"; shift; complete -p devvm >/dev/null || exit 9; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _devvm; printf '%s\n' "${COMPREPLY[@]}"`
		c := exec.Command(bash, append([]string{"--norc", "-c", line, "bash", sp}, words...)...)
		c.Dir = dir
		c.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":/usr/bin:/bin")
		out, err := c.Output()
		if err != nil {
			t.Fatalf("bash completing %q: %v", words, err)
		}
		return strings.Fields(string(out))
	}
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"devvm", "st"}, []string{"status"}},
		{[]string{"devvm", "status", "--j"}, []string{"--json"}},
		{[]string{"devvm", "ssh", ""}, []string{"qbuf"}},
		{[]string{"devvm", "completion", "f"}, []string{"fish"}},
		{[]string{"devvm", "-C", dir, "halt", "q"}, []string{"qbuf"}},
		{[]string{"devvm", "cp", "q"}, []string{"qbuf:"}},
		{[]string{"devvm", "--d"}, []string{"--dir", "--debug"}},
	} {
		if got := complete(c.words...); !slices.Equal(got, c.want) {
			t.Errorf("completing %q: %q, want %q", c.words, got, c.want)
		}
	}
	if code, fish, _ := runIn(t, "completion", "fish"); code != 0 || !strings.Contains(fish, "complete -c devvm -n __fish_use_subcommand -a status") {
		t.Errorf("completion fish: %d %q", code, fish)
	}
	if code, zsh, _ := runIn(t, "completion", "zsh"); code != 0 || !strings.Contains(zsh, "bashcompinit") || !strings.Contains(zsh, "complete -o default -F _devvm devvm") {
		t.Errorf("completion zsh: %d", code)
	}
}

func TestIOStreamsTerminals(t *testing.T) {
	ios, _, _, _ := hostenv.TestIOStreams()
	if ios.ProgressOnStderr() || ios.CanPrompt() || ios.TerminalIn() != nil {
		t.Error("buffers are terminals")
	}
	ios.SetStderrTTY(true)
	if !ios.ProgressOnStderr() {
		t.Error("a terminal gets no progress")
	}
	ios.SetDumb(true)
	if ios.ProgressOnStderr() {
		t.Error("TERM=dumb gets control sequences")
	}
	// The backend's UI follows the streams: a dumb terminal gets no spinner.
	ui := &backend.UI{Terminal: true}
	wireUI(ui, ios)
	if ui.Terminal || ui.In != nil || ui.Debug != nil {
		t.Errorf("UI from a dumb terminal: %+v", ui)
	}
	ios.SetDebug(ios.Err)
	wireUI(ui, ios)
	ui.Debugf("qemu %s", "-m 2G")
	if ui.Debug == nil || !strings.Contains(ios.Err.(interface{ String() string }).String(), "devvm: debug: qemu -m 2G") {
		t.Errorf("--debug does not reach the backend's UI")
	}
}
