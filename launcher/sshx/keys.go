package sshx

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// Key is devvm's per-user SSH identity.
type Key struct {
	// Signer authenticates devvm to its VMs.
	Signer ssh.Signer
	// PrivatePath is the OpenSSH-format private key (mode 0600), usable as IdentityFile.
	PrivatePath string
	// PublicPath is the matching "<type> <base64> <comment>" public key file.
	PublicPath string
	// AuthorizedLine is the authorized_keys line (with trailing newline) to install in guests.
	AuthorizedLine []byte
}

const (
	keyFileName = "id_ed25519"
	keyComment  = "devvm"
)

// EnsureUserKey returns the ed25519 key pair stored in dir (id_ed25519 and id_ed25519.pub),
// generating it on first use. dir is created with mode 0700 if missing. Two processes calling
// EnsureUserKey at once end up with the same key: the private key is published with a hard
// link, which fails if another process published one first. Like OpenSSH, a private key file
// readable or writable by group or others is refused.
func EnsureUserKey(dir string) (*Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create SSH key directory: %w", err)
	}
	priv := filepath.Join(dir, keyFileName)
	if _, err := os.Lstat(priv); errors.Is(err, fs.ErrNotExist) {
		if err := createPrivateKey(dir, priv); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("check SSH key %s: %w", priv, err)
	}
	return LoadKey(priv)
}

// createPrivateKey writes a new key to a temporary file and links it to path. If path
// appeared in the meantime (another devvm process), the existing key wins.
func createPrivateKey(dir, path string) error {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate ed25519 key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(edKey, keyComment)
	if err != nil {
		return fmt.Errorf("encode ed25519 key: %w", err)
	}
	tmp, err := writeTemp(dir, ".id_ed25519-*", pem.EncodeToMemory(blk))
	if err != nil {
		return fmt.Errorf("write SSH key in %s: %w", dir, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("install SSH key %s: %w", path, err)
	}
	return nil
}

// LoadKey loads an unencrypted OpenSSH private key and makes sure "<path>.pub" exists
// and matches it (writing it if missing or different).
func LoadKey(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read SSH key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("permissions %04o for SSH private key %s are too open: it must not be accessible by others; run `chmod 600 %s`", perm, path, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read SSH key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("SSH key %s is protected by a passphrase; devvm needs an unencrypted key there (move it away and devvm will create a new one)", path)
		}
		return nil, fmt.Errorf("SSH key %s is not a valid private key (%v); move it away and devvm will create a new one", path, err)
	}
	line := authorizedLine(signer.PublicKey())
	pubPath := path + ".pub"
	if cur, err := os.ReadFile(pubPath); err != nil || !bytes.Equal(cur, line) {
		tmp, err := writeTemp(filepath.Dir(path), ".id_pub-*", line)
		if err != nil {
			return nil, fmt.Errorf("write SSH public key %s: %w", pubPath, err)
		}
		if err := os.Rename(tmp, pubPath); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("write SSH public key %s: %w", pubPath, err)
		}
	}
	return &Key{Signer: signer, PrivatePath: path, PublicPath: pubPath, AuthorizedLine: line}, nil
}

func authorizedLine(pub ssh.PublicKey) []byte {
	line := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(pub), []byte("\n"))
	return append(line, []byte(" "+keyComment+"\n")...)
}

// writeTemp writes data to a new 0600 file in dir and returns its path.
func writeTemp(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern) // CreateTemp uses mode 0600
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
