package sshx

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestEnsureUserKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "share", "devvm")
	k1, err := EnsureUserKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, k1.PrivatePath: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, st.Mode().Perm(), want)
		}
	}
	pub, err := os.ReadFile(k1.PublicPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, k1.AuthorizedLine) || !bytes.HasPrefix(pub, []byte("ssh-ed25519 ")) {
		t.Errorf("public key file %q, authorized line %q", pub, k1.AuthorizedLine)
	}
	k2, err := EnsureUserKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.AuthorizedLine, k2.AuthorizedLine) {
		t.Error("second call generated a new key instead of reusing it")
	}

	// A deleted .pub is recreated from the private key.
	os.Remove(k1.PublicPath)
	if _, err := EnsureUserKey(dir); err != nil {
		t.Fatal(err)
	}
	if pub2, _ := os.ReadFile(k1.PublicPath); !bytes.Equal(pub2, pub) {
		t.Errorf("recreated public key %q, want %q", pub2, pub)
	}

	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command(keygen, "-y", "-f", k1.PrivatePath).Output()
		if err != nil {
			t.Fatalf("ssh-keygen -y rejects the key: %v", err)
		}
		if !bytes.HasPrefix(pub, bytes.TrimSpace(out)) {
			t.Errorf("ssh-keygen -y: %q, want prefix of %q", out, pub)
		}
	}

	if err := os.Chmod(k1.PrivatePath, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = EnsureUserKey(dir)
	if err == nil || !strings.Contains(err.Error(), "too open") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: got %v, want a 'too open ... chmod 600' error", err)
	}
}

func TestEnsureUserKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	lines := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := EnsureUserKey(dir)
			errs[i] = err
			if err == nil {
				lines[i] = k.AuthorizedLine
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(lines[i], lines[0]) {
			t.Fatalf("caller %d got a different key", i)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("leftover files: %v", names)
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "id_ed25519")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := EnsureUserKey(dir); err == nil || !strings.Contains(err.Error(), "not a valid private key") {
		t.Errorf("garbage key: got %v", err)
	}
}
