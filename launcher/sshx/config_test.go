package sshx

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/devvm/launcher/sshx/sshtest"
)

func TestSSHConfigGolden(t *testing.T) {
	got, err := SSHConfig(ConfigOptions{
		Host: "devvm-web", HostName: "127.0.0.1", Port: "10022", User: "dev",
		IdentityFile: "/home/me/.local/share/devvm/id_ed25519",
		KnownHosts:   "/home/me/My VMs/web/known_hosts%1",
		HostKeyAlias: "devvm-web", ProxyJump: "me@hyper", ForwardAgent: true,
		LocalForwards: []string{"8080:localhost:80", "[::1]:5433:db:5432"},
		Ciphers:       []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `Host devvm-web
  HostName 127.0.0.1
  Port 10022
  User dev
  IdentityFile /home/me/.local/share/devvm/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile "/home/me/My VMs/web/known_hosts%%1"
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  HostKeyAlias devvm-web
  HostKeyAlgorithms ssh-ed25519
  UpdateHostKeys no
  CheckHostIP no
  PasswordAuthentication no
  KbdInteractiveAuthentication no
  Ciphers chacha20-poly1305@openssh.com,aes128-gcm@openssh.com
  ProxyJump me@hyper
  ForwardAgent yes
  LocalForward 127.0.0.1:8080 localhost:80
  LocalForward [::1]:5433 db:5432
  LogLevel ERROR
`
	if got != want {
		t.Errorf("SSHConfig:\n%s\nwant:\n%s", got, want)
	}
}

func TestSSHConfigRefusesUnsafeValues(t *testing.T) {
	base := ConfigOptions{Host: "devvm-x", HostName: "127.0.0.1", User: "u", IdentityFile: "/k", KnownHosts: "/kh", HostKeyAlias: "devvm-x"}
	for name, mod := range map[string]func(*ConfigOptions){
		"newline in user":    func(o *ConfigOptions) { o.User = "u\n  ProxyCommand evil" },
		"quote in path":      func(o *ConfigOptions) { o.IdentityFile = `/a"b` },
		"pattern host":       func(o *ConfigOptions) { o.Host = "devvm-*" },
		"missing known host": func(o *ConfigOptions) { o.KnownHosts = "" },
		"bad port":           func(o *ConfigOptions) { o.Port = "22x" },
		"bad forward":        func(o *ConfigOptions) { o.LocalForwards = []string{"80"} },
	} {
		o := base
		mod(&o)
		if got, err := SSHConfig(o); err == nil {
			t.Errorf("%s: accepted:\n%s", name, got)
		}
	}
}

// TestOpenSSHUsesGeneratedConfig checks that OpenSSH's own client, given the generated
// config and the known_hosts written by Pin, connects with strict host key checking and
// refuses a server with another host key.
func TestOpenSSHUsesGeneratedConfig(t *testing.T) {
	sshBin := need(t, "ssh")
	srv := sshtest.Start(t, sshtest.Options{})
	tg := newTarget(t, srv)
	if _, err := Pin(testCtx(t), tg); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(srv.Addr, ":")
	cfgText, err := SSHConfig(ConfigOptions{
		Host: "devvm-x", HostName: host, Port: port, User: "tester",
		IdentityFile: tg.Key.PrivatePath, KnownHosts: tg.KnownHosts, HostKeyAlias: "devvm-x",
		Ciphers: EmulatedCPUCiphers,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgDir := filepath.Join(t.TempDir(), "with space")
	os.MkdirAll(cfgDir, 0o700)
	cfg := filepath.Join(cfgDir, "ssh_config")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		cmd := exec.Command(sshBin, append([]string{"-F", cfg, "-o", "BatchMode=yes"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), stderr.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, stderr.String()
	}
	if st, stderr := run("-v", "devvm-x", "true"); st != 0 {
		t.Fatalf("ssh -F config devvm-x true: exit %d: %s", st, stderr)
	} else if want := "cipher: " + EmulatedCPUCiphers[0]; !strings.Contains(stderr, want) {
		t.Errorf("OpenSSH did not negotiate the config's first cipher (%q not in its -v output):\n%s", want, stderr)
	}
	if st, stderr := run("devvm-x", "exit 7"); st != 7 {
		t.Errorf("ssh devvm-x 'exit 7': exit %d: %s", st, stderr)
	}

	// Same port, forged host key.
	srv.Close()
	forged := sshtest.Start(t, sshtest.Options{Addr: srv.Addr})
	forged.Authorize(tg.Key.Signer.PublicKey())
	st, stderr := run("devvm-x", "true")
	if st != 255 || !strings.Contains(stderr, "Host key verification failed") {
		t.Errorf("ssh to a forged host key: exit %d, stderr %q; want 255 and 'Host key verification failed'", st, stderr)
	}
	if cmds := forged.Commands(); len(cmds) != 0 {
		t.Errorf("OpenSSH ran %q on the forged server", cmds)
	}
}
