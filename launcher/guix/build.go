// Package guix drives `guix time-machine -C channels.scm -- system vm`:
// channel pin checks, the content-addressed build key, running guix with
// live progress, GC roots, and turning guix failures into clear errors.
package guix

import (
	"bufio"
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
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/devvm/devvm/launcher/hostenv"
	"github.com/devvm/devvm/launcher/proc"
)

// Runner runs guix commands.
type Runner struct {
	Env *hostenv.Env
	// Guix is the guix command (name on PATH or path).
	Guix string
	// Progress receives guix's progress (stderr); nil discards it.
	Progress io.Writer
	// Terminal runs guix under a pty so it prints progress bars (guix only
	// does on a terminal); set it when Progress is a terminal.
	Terminal bool
	// Timeout bounds a build.
	Timeout time.Duration
	// StallTimeout ends a build that has printed nothing but "looking for
	// substitutes" for this long (an offline real build loops there).
	StallTimeout time.Duration
}

// Request is one `guix system vm` build.
type Request struct {
	Dir        string // working directory (the checkout)
	Config     string // absolute config path (the wrapper WriteWrapper wrote)
	Channels   string // absolute channels.scm path
	Root       string // GC root symlink to create
	Persistent bool   // pass --persistent
	Log        string // file receiving guix's full stderr
	// LoadPath are directories passed as -L (Vmfile [guix] load_path), for
	// configs and manifests that use the project's own modules.
	LoadPath []string
	// DisableAuthentication passes --disable-authentication to time-machine
	// (Vmfile [guix] disable_authentication), for a pinned fork whose
	// channel has no introduction.
	DisableAuthentication bool
	// ImageSize is the disk image size in bytes (--image-size), used with
	// Persistent; 0 lets guix guess.
	ImageSize int64
	// ProjectConfig names the project's own config in error hints (the
	// wrapper is devvm's); "" uses Config.
	ProjectConfig string
}

// Result of a successful build.
type Result struct {
	RunVM    string   // /gnu/store/…-run-vm.sh
	Argv     []string // the guix command line
	Duration time.Duration
}

// Argv returns the guix command line that builds req.
func (r *Runner) Argv(req Request) []string {
	return append(r.vmArgv(req), "-r", req.Root, req.Config)
}

// DerivationArgv returns the guix command line that only computes req's
// derivation (`guix system vm -d`).
func (r *Runner) DerivationArgv(req Request) []string {
	return append(r.vmArgv(req), "-d", req.Config)
}

func (r *Runner) vmArgv(req Request) []string {
	argv := []string{r.Guix, "time-machine", "-C", req.Channels}
	if req.DisableAuthentication {
		argv = append(argv, "--disable-authentication")
	}
	argv = append(argv, "--", "system", "vm")
	for _, d := range req.LoadPath {
		argv = append(argv, "-L", d)
	}
	if req.Persistent {
		argv = append(argv, "--persistent")
		if req.ImageSize > 0 {
			argv = append(argv, fmt.Sprintf("--image-size=%d", req.ImageSize))
		}
	}
	return argv
}

// SystemVM builds the VM and returns the run-vm.sh path. It removes a stale
// GC root first (guix fails with "File exists" otherwise).
func (r *Runner) SystemVM(ctx context.Context, req Request) (*Result, error) {
	if err := os.Remove(req.Root); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale GC root %s: %w", req.Root, err)
	}
	if err := os.MkdirAll(filepath.Dir(req.Root), 0o755); err != nil {
		return nil, err
	}
	res, tail, err := r.run(ctx, req, r.Argv(req), "-run-vm.sh")
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(req.Root); err != nil {
		return nil, &BuildError{Kind: FailOther, Msg: "guix did not create the GC root " + req.Root, Tail: tail, Log: req.Log,
			Hint: "without it `guix gc` may collect the VM; check that the guix daemon can write there"}
	}
	return res, nil
}

// Derivation evaluates req without building (`guix system vm -d`) and
// returns the VM's derivation (/gnu/store/…-run-vm.sh.drv): equal
// derivations build the same VM, so a caller whose fast key changed can
// compare it with the recorded one before paying for a build. It takes one
// evaluation (seconds; guix builds nothing). Result.RunVM holds the .drv.
func (r *Runner) Derivation(ctx context.Context, req Request) (*Result, error) {
	res, _, err := r.run(ctx, req, r.DerivationArgv(req), "-run-vm.sh.drv")
	return res, err
}

// run runs argv, streaming stderr to the progress writer and the log, and
// returns the last stdout line that is a path ending in suffix.
func (r *Runner) run(ctx context.Context, req Request, argv []string, suffix string) (*Result, []string, error) {
	guixPath, err := r.Env.LookPath(r.Guix)
	if err != nil {
		return nil, nil, &BuildError{Kind: FailNoGuix, Msg: fmt.Sprintf("guix not found (%q)", r.Guix),
			Hint: "install GNU Guix (https://guix.gnu.org/manual/en/html_node/Installation.html) or set [guix] command in the Vmfile; `devvm doctor` checks it"}
	}
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	ctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)

	cmd := r.Env.Command(context.Background(), guixPath, argv[1:]...)
	cmd.Dir = req.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout

	logf, err := os.Create(req.Log)
	if err != nil {
		return nil, nil, fmt.Errorf("creating build log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s\n", strings.Join(argv, " "))

	var errStream io.ReadCloser
	if r.Terminal {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("opening a pty for guix: %w", err)
		}
		if f, ok := r.Progress.(*os.File); ok {
			pty.InheritSize(f, ptmx)
		}
		cmd.Stderr = tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 2
		defer tty.Close()
		errStream = ptmx
	} else {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		cmd.Stderr = pw
		defer pw.Close()
		errStream = pr
	}
	defer errStream.Close()

	start := r.Env.Now()
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", guixPath, err)
	}
	// The child holds its own copies of the pty/pipe ends.
	if c, ok := cmd.Stderr.(io.Closer); ok {
		c.Close()
	}

	tail := newTail(30)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		r.pump(errStream, logf, tail, stall)
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()

	var runErr error
	select {
	case runErr = <-waitErr:
	case <-ctx.Done():
		// guix and its children share the session and process group: wait
		// for all of them, not just guix, before returning.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		endGroup(cmd.Process.Pid, 5*time.Second)
		runErr = <-waitErr
	}
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	fmt.Fprintf(logf, "\n[stdout]\n%s", stdout.String())

	if cause := context.Cause(ctx); cause != nil {
		e := &BuildError{Tail: tail.lines(), Log: req.Log}
		if errors.Is(cause, errStalled) {
			e.Kind, e.Msg = FailSubstitutes, fmt.Sprintf("guix printed only \"looking for substitutes\" for %s: the substitute servers are unreachable", r.StallTimeout)
			e.Hint = "a real build needs substitutes (or many hours of local building): connect to the network, or add `--substitute-urls` of a reachable mirror; `devvm build --timeout` changes the limit"
		} else {
			e.Kind, e.Msg = FailTimeout, fmt.Sprintf("guix did not finish within %s", r.Timeout)
			e.Hint = "raise [guix] build_timeout in the Vmfile or pass `devvm build --timeout 2h`"
			if tail.sawSubstitutes {
				e.Hint = "guix was waiting for substitute servers (offline?); connect to the network, or " + e.Hint
			}
		}
		return nil, nil, e
	}
	if runErr != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			code = ee.ExitCode()
		}
		config := req.ProjectConfig
		if config == "" {
			config = req.Config
		}
		e := Classify(tail.lines(), code, rel(req.Dir, config), rel(req.Dir, req.Channels))
		e.Log = req.Log
		return nil, nil, e
	}
	out := lastStorePath(stdout.String(), suffix)
	if out == "" {
		return nil, nil, &BuildError{Kind: FailOther, Msg: "guix succeeded but printed no *" + suffix + " path on stdout",
			Tail: tail.lines(), Log: req.Log, Hint: "is [guix] command really GNU Guix? `guix system vm` prints the store path on stdout"}
	}
	return &Result{RunVM: out, Argv: argv, Duration: r.Env.Now().Sub(start)}, tail.lines(), nil
}

var errStalled = errors.New("substitutes stalled")

// pump copies guix's stderr to the user, the log and the tail, and fires
// stall when only "looking for substitutes" has been printed for too long.
func (r *Runner) pump(src io.Reader, log io.Writer, tail *tailBuf, stall context.CancelCauseFunc) {
	var mu sync.Mutex
	lastReal := r.Env.Now()
	done := make(chan struct{})
	defer close(done)
	if r.StallTimeout > 0 {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					mu.Lock()
					stalled := tail.sawSubstitutes && r.Env.Now().Sub(lastReal) > r.StallTimeout
					mu.Unlock()
					if stalled {
						stall(errStalled)
						return
					}
				}
			}
		}()
	}
	br := bufio.NewReader(src)
	buf := make([]byte, 32*1024)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if r.Progress != nil {
				r.Progress.Write(chunk)
			}
			log.Write(chunk)
			mu.Lock()
			for _, l := range tail.add(chunk) {
				if !substituteOnly(l) {
					lastReal = r.Env.Now()
				}
			}
			mu.Unlock()
		}
		if err != nil { // EOF, or EIO from a pty whose child exited
			mu.Lock()
			tail.flush()
			mu.Unlock()
			return
		}
	}
}

// tailBuf keeps the last lines of a stream (progress bars use \r).
type tailBuf struct {
	max            int
	buf            []string
	partial        []byte
	sawSubstitutes bool
}

func newTail(max int) *tailBuf { return &tailBuf{max: max} }

// add appends a chunk and returns the lines it completed.
func (t *tailBuf) add(b []byte) []string {
	var done []string
	for _, c := range b {
		if c == '\n' || c == '\r' {
			if l := strings.TrimSpace(stripANSI(string(t.partial))); l != "" {
				done = append(done, l)
				t.push(l)
			}
			t.partial = t.partial[:0]
			continue
		}
		t.partial = append(t.partial, c)
	}
	return done
}

func (t *tailBuf) flush() { t.add([]byte{'\n'}) }

func (t *tailBuf) push(l string) {
	if substituteOnly(l) {
		t.sawSubstitutes = true
		// Collapse the endless progress line to one entry.
		if n := len(t.buf); n > 0 && substituteOnly(t.buf[n-1]) {
			t.buf[n-1] = l
			return
		}
	}
	t.buf = append(t.buf, l)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
}

func (t *tailBuf) lines() []string { return append([]string(nil), t.buf...) }

func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < '@' || s[j] > '~') {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lastStorePath returns the last line of out that is an absolute path
// ending in suffix.
func lastStorePath(out, suffix string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if filepath.IsAbs(l) && strings.HasSuffix(l, suffix) {
			return l
		}
	}
	return ""
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// endGroup waits until no process of group pgid runs any more, and SIGKILLs
// the group if some still do after grace (then waits a second more).
func endGroup(pgid int, grace time.Duration) {
	gone := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
			if !proc.GroupRunning(pgid) {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	if !gone(grace) {
		syscall.Kill(-pgid, syscall.SIGKILL)
		gone(time.Second)
	}
}
