package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "devvm-cli-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "devvm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type res struct {
	out, err string
	code     int
}

// devvm runs the binary in dir with a private home.
func devvm(t *testing.T, dir string, args ...string) res {
	t.Helper()
	home := t.TempDir()
	c := exec.Command(bin, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home+"/d", "XDG_STATE_HOME="+home+"/s", "XDG_RUNTIME_DIR="+home+"/r",
		"PATH=/nonexistent:/usr/bin:/bin")
	var o, e strings.Builder
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	r := res{out: o.String(), err: e.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// snapshot lists every file under dir with its content.
func snapshot(t *testing.T, dir string) map[string]string {
	m := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			m[p] = string(b)
		}
		return nil
	})
	return m
}

func TestBadVmfileChangesNothing(t *testing.T) {
	for name, c := range map[string]struct{ vmfile, want string }{
		"unknown key":  {"name = \"x\"\nmemroy = \"2G\"\n", "Vmfile:2: memroy"},
		"bad size":     {"memory = \"2 gigs\"\n", "Vmfile:1: memory"},
		"port range":   {"[ssh]\nport = 70000\n", "Vmfile:2: ssh.port"},
		"guest quotes": {"[[share]]\nhost = \".\"\nguest = \"/mnt/a'b\"\ntag = \"share0\"\n", "share[0].guest"},
		"broken toml":  {"[ssh\n", "Vmfile"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "Vmfile"), []byte(c.vmfile), 0o644)
			before := snapshot(t, dir)
			for _, cmd := range [][]string{{"up"}, {"build"}, {"status"}, {"halt"}, {"destroy", "-f"}} {
				r := devvm(t, dir, cmd...)
				if r.code == 0 || !strings.Contains(r.err, c.want) || strings.Contains(r.err, "panic") {
					t.Errorf("devvm %s: exit %d, stderr %q, want it to name %q", cmd[0], r.code, r.err, c.want)
				}
			}
			if after := snapshot(t, dir); len(after) != len(before) || after[filepath.Join(dir, "Vmfile")] != c.vmfile {
				t.Errorf("files changed after a refused command: %v", after)
			}
		})
	}
}

func TestNoVmfile(t *testing.T) {
	r := devvm(t, t.TempDir(), "up")
	if r.code != 1 || !strings.Contains(r.err, "devvm init") {
		t.Errorf("up without a Vmfile: %d %q", r.code, r.err)
	}
}

func TestInitThenStatusAndDoctor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "qbuf")
	os.Mkdir(dir, 0o755)
	if r := devvm(t, dir, "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r := devvm(t, dir, "status", "--json")
	var sts struct {
		Schema   string
		Machines []map[string]any
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &sts) != nil || sts.Schema != "devvm/v1" || sts.Machines[0]["state"] != "stopped" {
		t.Errorf("status --json of a new VM: %+v", r)
	}
	if _, ok := sts.Machines[0]["started"]; ok {
		t.Errorf("status --json of a stopped VM has a start time: %s", r.out)
	}
	// No guix on PATH: doctor fails (exit 1) and says how to fix it.
	r = devvm(t, dir, "doctor", "--json")
	var checks struct {
		Schema string
		OK     bool
		Checks []map[string]any
	}
	if r.code != 1 || json.Unmarshal([]byte(r.out), &checks) != nil || checks.Schema != "devvm/v1" || checks.OK {
		t.Fatalf("doctor --json without guix: exit %d, %q", r.code, r.out)
	}
	found := false
	for _, c := range checks.Checks {
		if c["name"] == "guix" && c["ok"] == false && c["fix"] != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("doctor did not report the missing guix: %s", r.out)
	}
	if r := devvm(t, dir, "doctor"); r.code != 1 || !strings.Contains(r.out, "FAIL guix") {
		t.Errorf("doctor text: %d %q", r.code, r.out)
	}
	if r := devvm(t, dir, "ssh", "--", "true"); r.code == 0 || !strings.Contains(r.err, "devvm up") {
		t.Errorf("ssh to a stopped VM: %+v", r)
	}
	if r := devvm(t, dir, "ssh", "nosuchvm", "--", "true"); r.code != 2 {
		t.Errorf("ssh to an unknown machine: exit %d %q, want 2", r.code, r.err)
	}
	if r := devvm(t, dir, "frobnicate"); r.code == 0 {
		t.Errorf("unknown command accepted")
	}
}

func TestSplitSSHArgs(t *testing.T) {
	one := []string{"qbuf"}
	many := []string{"vm1", "vm2"}
	cases := []struct {
		args     []string
		machines []string
		name     string
		argv     []string
		bad      bool
	}{
		{nil, one, "qbuf", nil, false},
		{[]string{"--", "uname", "-a"}, one, "qbuf", []string{"uname", "-a"}, false},
		{[]string{"qbuf"}, one, "qbuf", nil, false},
		{[]string{"qbuf", "--", "ls"}, one, "qbuf", []string{"ls"}, false},
		{[]string{"--", "qbuf"}, one, "qbuf", []string{"qbuf"}, false}, // devvm ssh -- qbuf runs a command "qbuf"
		{[]string{"--", "git", "log", "--", "README.md"}, one, "qbuf", []string{"git", "log", "--", "README.md"}, false},
		{[]string{"qbuf", "--", "npm", "test", "--", "--watch"}, one, "qbuf", []string{"npm", "test", "--", "--watch"}, false},
		{[]string{"ls"}, one, "", nil, true},
		{[]string{"qbuf", "ls"}, one, "", nil, true},
		{[]string{"qbuf", "-x"}, one, "", nil, true},
		{[]string{"--"}, one, "", nil, true},
		{[]string{"vm2", "--", "id"}, many, "vm2", []string{"id"}, false},
		{[]string{"vm2"}, many, "vm2", nil, false},
		{nil, many, "", nil, true},
		{[]string{"--", "id"}, many, "", nil, true},
		{[]string{"vm3", "--", "id"}, many, "", nil, true},
		{[]string{"vm1", "vm2", "--", "id"}, many, "", nil, true},
	}
	for _, c := range cases {
		name, argv, err := splitSSHArgs(c.args, c.machines)
		if (err != nil) != c.bad || name != c.name || !slices.Equal(argv, c.argv) {
			t.Errorf("splitSSHArgs(%q, %q) = %q, %q, %v", c.args, c.machines, name, argv, err)
		}
	}
}
