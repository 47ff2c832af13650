package hostenv

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// IOStreams are the standard streams of one devvm command and what is known
// about them: which are terminals, and whether the terminal understands
// control sequences (TERM=dumb does not). Commands write through it instead
// of os.Stdout, so tests run them in process with buffers (TestIOStreams),
// like the GitHub CLI's pkg/iostreams.
type IOStreams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer

	inTTY, outTTY, errTTY bool
	dumb                  bool
	// debug receives --debug lines (what devvm runs); nil when off.
	debug io.Writer
}

// System returns the process's streams, with the terminal flags read from
// the file descriptors and TERM.
func System() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		inTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		outTTY: term.IsTerminal(int(os.Stdout.Fd())),
		errTTY: term.IsTerminal(int(os.Stderr.Fd())),
		dumb:   os.Getenv("TERM") == "dumb",
	}
}

// TestIOStreams returns streams over buffers (stdin, stdout, stderr), none of
// them a terminal; the Set… methods pretend otherwise.
func TestIOStreams() (ios *IOStreams, in, out, errOut *bytes.Buffer) {
	in, out, errOut = &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, Err: errOut}, in, out, errOut
}

// IsStdinTTY tells whether stdin is a terminal.
func (s *IOStreams) IsStdinTTY() bool { return s.inTTY }

// IsStdoutTTY tells whether stdout is a terminal.
func (s *IOStreams) IsStdoutTTY() bool { return s.outTTY }

// IsStderrTTY tells whether stderr is a terminal.
func (s *IOStreams) IsStderrTTY() bool { return s.errTTY }

// SetStdinTTY, SetStdoutTTY and SetStderrTTY override the terminal flags (tests).
func (s *IOStreams) SetStdinTTY(v bool)  { s.inTTY = v }
func (s *IOStreams) SetStdoutTTY(v bool) { s.outTTY = v }
func (s *IOStreams) SetStderrTTY(v bool) { s.errTTY = v }

// SetDumb says the terminal understands no control sequences (TERM=dumb).
func (s *IOStreams) SetDumb(v bool) { s.dumb = v }

// ProgressOnStderr tells whether stderr may get control sequences
// (spinners, \r and erase-line): a terminal whose TERM is not "dumb".
func (s *IOStreams) ProgressOnStderr() bool { return s.errTTY && !s.dumb }

// CanPrompt tells whether devvm may ask a question: stdin and stderr are
// terminals (the question goes to stderr, the answer comes from stdin).
func (s *IOStreams) CanPrompt() bool { return s.inTTY && s.errTTY }

// TerminalIn returns stdin as a file when it is a terminal (for raw mode and
// prompts), else nil.
func (s *IOStreams) TerminalIn() *os.File {
	if f, ok := s.In.(*os.File); ok && s.inTTY {
		return f
	}
	return nil
}

// InFile returns stdin as a file when it is one (a terminal, a pipe or a
// regular file), else nil.
func (s *IOStreams) InFile() *os.File {
	f, _ := s.In.(*os.File)
	return f
}

// SetDebug turns --debug output on (to w) or off (nil).
func (s *IOStreams) SetDebug(w io.Writer) { s.debug = w }

// Debug returns the --debug writer, or nil when --debug is off.
func (s *IOStreams) Debug() io.Writer { return s.debug }

// Debugf writes one --debug line ("devvm: debug: …") when --debug is on.
func (s *IOStreams) Debugf(format string, a ...any) {
	if s.debug != nil {
		fmt.Fprintf(s.debug, "devvm: debug: "+format+"\n", a...)
	}
}
