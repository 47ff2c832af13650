package sshx

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyUnknownError means there is no recorded host key to verify the server against.
type HostKeyUnknownError struct {
	File   string // known_hosts file consulted
	Host   string // name looked up (HostKeyAlias or [host]:port)
	Pinned bool   // the target is a devvm VM pinned under a HostKeyAlias
	Reason string // e.g. "the file does not exist"
}

func (e *HostKeyUnknownError) Error() string {
	if e.Pinned {
		return fmt.Sprintf("no pinned host key for %s (%s in %s): run `devvm up` to boot the VM and record its host key", e.Host, e.Reason, e.File)
	}
	return fmt.Sprintf("unknown SSH host %s (%s in %s): connect once with OpenSSH's ssh to check and record its host key", e.Host, e.Reason, e.File)
}

// HostKeyMismatchError means the server presented a key different from the recorded one.
// The connection was refused.
type HostKeyMismatchError struct {
	File      string   // known_hosts file consulted
	Host      string   // name looked up (HostKeyAlias or [host]:port)
	Pinned    bool     // the target is a devvm VM pinned under a HostKeyAlias
	Expected  []string // SHA256 fingerprints on record
	Presented string   // SHA256 fingerprint the server presented
}

func (e *HostKeyMismatchError) Error() string {
	msg := fmt.Sprintf("host key verification failed for %s: the server presented %s but %s records %s",
		e.Host, e.Presented, e.File, strings.Join(e.Expected, ", "))
	if e.Pinned {
		return msg + "; connection refused: possible man-in-the-middle, or the VM was rebooted outside devvm: run `devvm reload`"
	}
	return msg + "; connection refused: possible man-in-the-middle, or the host key was changed: verify the new key with the host's administrator, then update " + e.File
}

// hostKeyName is the name under which the target's key is recorded, and the host:port form
// handed to the SSH handshake (knownhosts looks up host:port, writing port 22 as a bare name).
func hostKeyName(t *Target) (name, address string) {
	if t.HostKeyAlias != "" {
		return t.HostKeyAlias, net.JoinHostPort(t.HostKeyAlias, "22")
	}
	return knownhosts.Normalize(t.Addr), t.Addr
}

// probeKey is a key nobody holds; checking it against known_hosts reveals the recorded keys.
var probeKey, _ = ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))

var zeroAddr = &net.TCPAddr{IP: net.IPv4zero}

// strictHostKeys returns a callback that accepts only the keys recorded for t in t.KnownHosts,
// and the host key algorithms to negotiate: only those of the recorded keys (golang/go#29286:
// otherwise the server may present another key type that is then reported as a mismatch).
func strictHostKeys(t *Target) (ssh.HostKeyCallback, []string, error) {
	name, address := hostKeyName(t)
	pinned := t.HostKeyAlias != ""
	if t.KnownHosts == "" {
		return nil, nil, fmt.Errorf("no known_hosts file given for %s: devvm never connects without verifying the host key", name)
	}
	if _, err := os.Stat(t.KnownHosts); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, &HostKeyUnknownError{File: t.KnownHosts, Host: name, Pinned: pinned, Reason: "the file does not exist"}
	} else if err != nil {
		return nil, nil, fmt.Errorf("read known hosts: %w", err)
	}
	db, err := knownhosts.New(t.KnownHosts)
	if err != nil {
		return nil, nil, fmt.Errorf("read known hosts %s: %w", t.KnownHosts, err)
	}
	var algos []string
	var ke *knownhosts.KeyError
	switch err := db(address, zeroAddr, probeKey); {
	case errors.As(err, &ke) && len(ke.Want) > 0:
		seen := map[string]bool{}
		for _, k := range ke.Want {
			for _, a := range algorithmsFor(k.Key.Type()) {
				if !seen[a] {
					seen[a] = true
					algos = append(algos, a)
				}
			}
		}
	case errors.As(err, &ke):
		return nil, nil, &HostKeyUnknownError{File: t.KnownHosts, Host: name, Pinned: pinned, Reason: "no key recorded for it"}
	case err != nil:
		return nil, nil, fmt.Errorf("check known hosts %s: %w", t.KnownHosts, err)
	}
	cb := func(_ string, remote net.Addr, key ssh.PublicKey) error {
		err := db(address, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			e := &HostKeyMismatchError{File: t.KnownHosts, Host: name, Pinned: pinned, Presented: ssh.FingerprintSHA256(key)}
			for _, k := range ke.Want {
				e.Expected = append(e.Expected, ssh.FingerprintSHA256(k.Key))
			}
			return e
		case errors.As(err, &ke):
			return &HostKeyUnknownError{File: t.KnownHosts, Host: name, Pinned: pinned, Reason: "no key recorded for it"}
		case errors.As(err, &re):
			return fmt.Errorf("host key %s of %s is marked @revoked in %s: connection refused", ssh.FingerprintSHA256(key), name, re.Revoked.Filename)
		default:
			return fmt.Errorf("host key check for %s: %w", name, err)
		}
	}
	return cb, algos, nil
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// writePinned replaces file with a single known_hosts line recording key under name.
func writePinned(file, name string, key ssh.PublicKey) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{name}, key) + "\n"
	tmp, err := writeTemp(dir, ".known_hosts-*", []byte(line))
	if err != nil {
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record host key in %s: %w", file, err)
	}
	return nil
}
