package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrLink is wrapped by every refusal to use a symbolic link devvm did not
// create.
var ErrLink = errors.New("is a symbolic link devvm did not create")

func linkError(path string) error {
	return fmt.Errorf("%s %w: devvm never follows it; remove it (`rm %s`) and run the command again", path, ErrLink, path)
}

// MkdirPrivate makes sure path is a directory of this user with mode 0700:
// it creates it (mode 0700, the parent must exist or is created the same
// way), or checks an existing one: a symbolic link, a non-directory or a
// directory of another user is refused with the reason; a directory of
// this user with a wider mode is narrowed to 0700.
func MkdirPrivate(path string) error { return mkdirOwned(path, 0o700) }

func mkdirOwned(path string, mode os.FileMode) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		if parent := filepath.Dir(path); parent != path {
			if _, err := os.Lstat(parent); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(parent, 0o700); err != nil {
					return fmt.Errorf("creating %s: %w", parent, err)
				}
			}
		}
		if err := os.Mkdir(path, mode); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating %s: %w", path, err)
		}
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
		st, err = os.Lstat(path)
	}
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return linkError(path)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory: devvm keeps its state there; move it away and run the command again", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d): devvm refuses a state directory another user controls; remove it or set XDG_STATE_HOME/XDG_RUNTIME_DIR", path, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm() != mode.Perm() {
		if err := os.Chmod(path, mode); err != nil {
			return fmt.Errorf("narrowing %s to mode %o: %w", path, mode.Perm(), err)
		}
	}
	return nil
}

// EnsureRuntimeDir creates or checks devvm's socket directory: owned by
// this user, mode 0700, not a link (it may live in a world-writable /tmp,
// where another user could have made it first).
func EnsureRuntimeDir(dir string) error {
	if err := MkdirPrivate(dir); err != nil {
		return fmt.Errorf("devvm's runtime directory: %w", err)
	}
	return nil
}

// OpenFile opens path like os.OpenFile but never follows a symbolic link in
// its last component (O_NOFOLLOW): a link is an error that names it.
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil && errors.Is(err, unix.ELOOP) {
		return nil, linkError(path)
	}
	return f, err
}

// ReadFile reads a regular file (not a link) of at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: it is not a file devvm wrote", path, limit)
	}
	return b, nil
}

// CreateFile creates or truncates path for writing with mode perm, refusing
// a link; an existing file is narrowed to perm.
func CreateFile(path string, perm os.FileMode) (*os.File, error) {
	f, err := OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// WriteFileAtomic writes data to path through a new temporary file and
// rename(2): a link at path is replaced, never followed.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(mode)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// WriteFileIfChanged writes data atomically unless path already holds it.
func WriteFileIfChanged(path string, data []byte, mode os.FileMode) error {
	if old, err := ReadFile(path, int64(len(data))+1); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return WriteFileAtomic(path, data, mode)
}
