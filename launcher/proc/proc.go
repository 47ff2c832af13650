// Package proc proves whether a recorded pid is still devvm's own QEMU
// process, so that devvm never signals a process it has not proven to be its
// own (pids are reused; state files survive reboots and crashes).
//
// An Identity is captured right after QEMU starts and stored with the VM's
// state. Check compares it with the live system: same host boot, pid exists
// and is not a zombie, exactly the same start time (clock ticks since boot,
// see Identity.StartTicks), the marker still in the command line and, when
// QEMU was started with -pidfile, the pidfile still locked by that pid (QEMU
// holds a POSIX write lock on its pidfile for its whole life).
//
// Linux only.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"
)

// bootIDPath is the kernel's random per-boot id; tests point it elsewhere.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// Identity is what devvm records about a process it started.
type Identity struct {
	PID int `json:"pid"`
	// StartTime is the process start time in ms since the Unix epoch, as
	// reported by gopsutil v4 CreateTime (10 ms resolution at USER_HZ=100).
	// It is derived from the wall clock, so a clock step (NTP, resume from
	// suspend) shifts it for every process; Check therefore compares
	// StartTicks when recorded and StartTime only for records without it.
	StartTime int64 `json:"start_time"`
	// StartTicks is field 22 of /proc/<pid>/stat: the start time in clock
	// ticks since boot, immune to clock steps (meaningful with BootID).
	StartTicks uint64 `json:"start_ticks,omitempty"`
	// BootID is the host's /proc/sys/kernel/random/boot_id when captured.
	BootID string `json:"boot_id"`
	// Marker is a string unique to this VM that appears inside one of the
	// process's arguments, e.g. "devvm-<uuid>" from -name or the QMP path.
	Marker string `json:"marker"`
	// Pidfile is QEMU's -pidfile, or "" if QEMU was started without one.
	Pidfile string `json:"pidfile,omitempty"`
}

// State is the result of a Check.
type State string

const (
	// Alive: the pid is still the recorded process.
	Alive State = "alive"
	// Gone: the recorded process no longer runs (exited, zombie, or the
	// host rebooted). Its state files are stale.
	Gone State = "gone"
	// Foreign: a process with that pid exists but it cannot be proven to
	// be the recorded one; it must not be touched.
	Foreign State = "foreign"
	// Unknown: the check itself failed (e.g. /proc unreadable or a broken
	// identity); neither touch the pid nor assume it is gone.
	Unknown State = "unknown"
)

// Verdict is the result of a Check; Reason is a sentence for `devvm status`.
type Verdict struct {
	State  State  `json:"state"`
	Reason string `json:"reason"`
}

func (v Verdict) String() string { return string(v.State) + ": " + v.Reason }

func readBootID() (string, error) {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return "", fmt.Errorf("reading the host boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("reading the host boot id: %s is empty", bootIDPath)
	}
	return id, nil
}

// Capture records the identity of the running process pid. marker must occur
// in one of its arguments. If pidfile is not "", the process must hold the
// lock on it: call Capture after QEMU's QMP socket answers (QEMU locks the
// pidfile before it creates its monitors).
func Capture(pid int, marker, pidfile string) (Identity, error) {
	if pid <= 0 {
		return Identity{}, fmt.Errorf("cannot record process identity: invalid pid %d", pid)
	}
	if marker == "" {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: empty marker (it would match any process)", pid)
	}
	boot, err := readBootID()
	if err != nil {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: %w", pid, err)
	}
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		if errors.Is(err, process.ErrorProcessNotRunning) {
			return Identity{}, fmt.Errorf("cannot record identity of pid %d: the process has already exited", pid)
		}
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: %w", pid, err)
	}
	if zombie(p) {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: the process has already exited (zombie)", pid)
	}
	start, err := p.CreateTime()
	if err != nil {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: reading its start time: %w", pid, err)
	}
	ticks, err := startTicks(pid)
	if err != nil {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: %w", pid, err)
	}
	args, err := p.CmdlineSlice()
	if err != nil {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: reading its command line: %w", pid, err)
	}
	if !hasMarker(args, marker) {
		return Identity{}, fmt.Errorf("cannot record identity of pid %d: its command line %q does not contain the marker %q; devvm would not recognise it later", pid, shorten(strings.Join(args, " ")), marker)
	}
	if pidfile != "" {
		holder, err := PidfileLockHolder(pidfile)
		if err != nil {
			return Identity{}, fmt.Errorf("cannot record identity of pid %d: %w", pid, err)
		}
		if holder != pid {
			return Identity{}, fmt.Errorf("cannot record identity of pid %d: pidfile %s is %s, not by pid %d; was QEMU started with -pidfile %s, and is it fully started?", pid, pidfile, describeHolder(holder), pid, pidfile)
		}
	}
	return Identity{PID: pid, StartTime: start, StartTicks: ticks, BootID: boot, Marker: marker, Pidfile: pidfile}, nil
}

// statFields returns the fields of /proc/<pid>/stat after comm: element 0
// is field 3 (state).
func statFields(pid int) ([]string, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// Field 2 (comm) is in parentheses and may contain spaces and ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("unexpected format of %s", path)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// startTicks reads the start time in clock ticks since boot (field 22 of
// /proc/<pid>/stat).
func startTicks(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, fmt.Errorf("reading the start time: %w", err)
	}
	const field = 22 - 3
	if len(f) <= field {
		return 0, fmt.Errorf("reading the start time: /proc/%d/stat has only %d fields", pid, len(f)+2)
	}
	v, err := strconv.ParseUint(f[field], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading the start time from /proc/%d/stat: %w", pid, err)
	}
	return v, nil
}

// GroupRunning reports whether a process of process group pgid still runs.
// Zombies do not count: they have exited and only wait to be reaped, which
// for orphans is up to init.
func GroupRunning(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	want := strconv.Itoa(pgid)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		// f[0] is the state, f[2] the process group.
		if err == nil && len(f) > 2 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

func hasMarker(args []string, marker string) bool {
	for _, a := range args {
		if strings.Contains(a, marker) {
			return true
		}
	}
	return false
}

func zombie(p *process.Process) bool {
	st, err := p.Status()
	if err != nil {
		return false
	}
	for _, s := range st {
		if s == process.Zombie {
			return true
		}
	}
	return false
}

func describeHolder(holder int) string {
	if holder == 0 {
		return "not locked"
	}
	return fmt.Sprintf("locked by pid %d", holder)
}

func shorten(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// timeFormat shows milliseconds: start times are compared exactly.
const timeFormat = "2006-01-02 15:04:05.000"

func describe(p *process.Process) string {
	name, _ := p.Name()
	if name == "" {
		name = "unknown command"
	}
	if ms, err := p.CreateTime(); err == nil {
		return fmt.Sprintf("%s, started %s", name, time.UnixMilli(ms).Format(timeFormat))
	}
	return name
}

// Check tells whether id still denotes a live process (see the package doc).
// A zombie counts as Gone: it has exited and only waits to be reaped.
func Check(id Identity) Verdict {
	pid := id.PID
	if pid <= 0 {
		return Verdict{Unknown, fmt.Sprintf("the recorded pid %d is invalid; not touching anything", pid)}
	}
	if id.BootID == "" || id.Marker == "" {
		return Verdict{Unknown, fmt.Sprintf("the record for pid %d lacks its boot id or marker; not touching it", pid)}
	}
	boot, err := readBootID()
	if err != nil {
		return Verdict{Unknown, fmt.Sprintf("cannot check pid %d: %v", pid, err)}
	}
	if boot != id.BootID {
		return Verdict{Gone, fmt.Sprintf("host rebooted since pid %d was started", pid)}
	}
	// Signal 0 checks existence without /proc, and tells apart a pid owned
	// by another user (EPERM), which gopsutil would report as missing under
	// a hidepid /proc mount.
	switch err := unix.Kill(pid, 0); {
	case errors.Is(err, unix.ESRCH):
		return Verdict{Gone, fmt.Sprintf("pid %d has exited", pid)}
	case errors.Is(err, unix.EPERM):
		return Verdict{Foreign, fmt.Sprintf("pid %d now belongs to another user; not touching it", pid)}
	case err != nil:
		return Verdict{Unknown, fmt.Sprintf("cannot check pid %d: %v", pid, err)}
	}
	p, err := process.NewProcess(int32(pid))
	if errors.Is(err, process.ErrorProcessNotRunning) {
		return Verdict{Gone, fmt.Sprintf("pid %d has exited", pid)}
	} else if err != nil {
		return Verdict{Unknown, fmt.Sprintf("cannot check pid %d: %v", pid, err)}
	}
	if zombie(p) {
		return Verdict{Gone, fmt.Sprintf("pid %d has exited (zombie, not yet reaped by its parent)", pid)}
	}
	var same bool
	if id.StartTicks != 0 {
		ticks, err := startTicks(pid)
		same = ticks == id.StartTicks
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return Verdict{Gone, fmt.Sprintf("pid %d has exited", pid)}
			}
			return Verdict{Unknown, fmt.Sprintf("cannot check pid %d: %v", pid, err)}
		}
	} else {
		start, err := p.CreateTime()
		same = start == id.StartTime
		if err != nil {
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(serr, os.ErrNotExist) {
				return Verdict{Gone, fmt.Sprintf("pid %d has exited", pid)}
			}
			return Verdict{Unknown, fmt.Sprintf("cannot read the start time of pid %d: %v", pid, err)}
		}
	}
	if !same {
		return Verdict{Foreign, fmt.Sprintf("pid %d is now another process (%s; ours started %s); not touching it", pid, describe(p), time.UnixMilli(id.StartTime).Format(timeFormat))}
	}
	args, err := p.CmdlineSlice()
	if err != nil {
		return Verdict{Unknown, fmt.Sprintf("cannot read the command line of pid %d: %v", pid, err)}
	}
	if !hasMarker(args, id.Marker) {
		if len(args) == 0 {
			// An empty cmdline with the right start time: the process is
			// exiting (its memory is already gone) or a kernel thread.
			return Verdict{Gone, fmt.Sprintf("pid %d is exiting", pid)}
		}
		return Verdict{Foreign, fmt.Sprintf("pid %d is now another process (%s, command line lacks %q); not touching it", pid, describe(p), id.Marker)}
	}
	if id.Pidfile != "" {
		holder, err := PidfileLockHolder(id.Pidfile)
		if err != nil {
			return Verdict{Unknown, fmt.Sprintf("cannot check pid %d: %v", pid, err)}
		}
		if holder != pid {
			what := describeHolder(holder)
			if _, err := os.Stat(id.Pidfile); errors.Is(err, os.ErrNotExist) {
				what = "missing"
			}
			return Verdict{Foreign, fmt.Sprintf("pid %d runs but its pidfile %s is %s; not touching it", pid, id.Pidfile, what)}
		}
	}
	return Verdict{Alive, fmt.Sprintf("pid %d is running (%s)", pid, describe(p))}
}

// NotAliveError is returned by Signal when it refuses to signal, or when the
// process vanished before the signal was sent (Verdict.State == Gone).
type NotAliveError struct {
	PID     int
	Signal  syscall.Signal
	Verdict Verdict
}

func (e *NotAliveError) Error() string {
	return fmt.Sprintf("not sending %v to pid %d: %s", e.Signal, e.PID, e.Verdict.Reason)
}

// Signal sends sig to the process only if Check(id) says Alive at that moment.
// It opens a pidfd first and checks afterwards, so the signal reaches the
// checked process even if the pid is reused in between (kernels without
// pidfd_open fall back to kill(2)). When Signal refuses, the error is a
// *NotAliveError.
func Signal(id Identity, sig syscall.Signal) error {
	pidfd := -1
	if id.PID > 0 {
		fd, err := unix.PidfdOpen(id.PID, 0)
		switch {
		case err == nil:
			pidfd = fd
			defer unix.Close(fd)
		case errors.Is(err, unix.ESRCH):
			return &NotAliveError{id.PID, sig, Verdict{Gone, fmt.Sprintf("pid %d has exited", id.PID)}}
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			// No pidfd support (or forbidden by seccomp): use kill(2).
		default:
			return fmt.Errorf("sending %v to pid %d: opening a pidfd: %w", sig, id.PID, err)
		}
	}
	if v := Check(id); v.State != Alive {
		return &NotAliveError{id.PID, sig, v}
	}
	var err error
	if pidfd >= 0 {
		err = unix.PidfdSendSignal(pidfd, sig, nil, 0)
	} else {
		err = unix.Kill(id.PID, sig)
	}
	if errors.Is(err, unix.ESRCH) {
		return &NotAliveError{id.PID, sig, Verdict{Gone, fmt.Sprintf("pid %d exited before the signal was sent", id.PID)}}
	}
	if err != nil {
		return fmt.Errorf("sending %v to pid %d: %w", sig, id.PID, err)
	}
	return nil
}

// WaitGone polls every poll until the process is no longer ours (Ours): a
// pid that still runs with the recorded start time and marker is waited for
// even when it lost its pidfile lock (QEMU shutting down). A zombie counts as exited, so if the
// process is the caller's child the caller must still reap it (cmd.Wait).
// On ctx's end it returns an error with the last verdict.
func WaitGone(ctx context.Context, id Identity, poll time.Duration) error {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if !Ours(id) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for pid %d to exit: %w (last check: %s)", id.PID, ctx.Err(), Check(id))
		case <-t.C:
		}
	}
}

// PidfileLockHolder returns the pid of the process holding a POSIX write
// lock on path (QEMU locks its -pidfile while running), or 0 when the file is
// unlocked or does not exist. Locks held by the calling process itself are
// not reported (F_GETLK semantics).
func PidfileLockHolder(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checking the lock on pidfile %s: %w", path, err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return 0, fmt.Errorf("checking the lock on pidfile %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return 0, nil
	}
	return int(lk.Pid), nil
}

// Usage reports pid's CPU use averaged over its lifetime (it does not block,
// so `devvm status` stays fast; 100 means one full core, so a busy 4-vCPU VM
// can show up to 400), and its resident memory in bytes.
func Usage(pid int) (cpuPercent float64, rssBytes uint64, err error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("reading usage: invalid pid %d", pid)
	}
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		if errors.Is(err, process.ErrorProcessNotRunning) {
			return 0, 0, fmt.Errorf("reading usage of pid %d: the process has exited", pid)
		}
		return 0, 0, fmt.Errorf("reading usage of pid %d: %w", pid, err)
	}
	mem, err := p.MemoryInfo()
	if err != nil {
		return 0, 0, fmt.Errorf("reading memory use of pid %d: %w", pid, err)
	}
	cpu, err := p.CPUPercent()
	if err != nil {
		return 0, 0, fmt.Errorf("reading CPU use of pid %d: %w", pid, err)
	}
	return cpu, mem.RSS, nil
}

// Exited tells whether the process id recorded has ended: its pid no longer
// exists, is a zombie, or is now another process (another start time, or
// the host rebooted). Unlike Check it ignores the marker and the pidfile
// lock: QEMU drops its pidfile lock while it shuts down, and a process that
// still runs with its start time is the one devvm started until it is gone.
func Exited(id Identity) bool {
	if id.PID <= 0 {
		return true
	}
	if boot, err := readBootID(); err == nil && id.BootID != "" && boot != id.BootID {
		return true
	}
	if err := unix.Kill(id.PID, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	p, err := process.NewProcess(int32(id.PID))
	if errors.Is(err, process.ErrorProcessNotRunning) {
		return true
	}
	if err == nil && zombie(p) {
		return true
	}
	if id.StartTicks != 0 {
		ticks, err := startTicks(id.PID)
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		return err == nil && ticks != id.StartTicks
	}
	start, err := p.CreateTime()
	return err == nil && start != id.StartTime
}

// Ours tells whether the process id recorded still runs as that process:
// the same start time and the marker in its command line, whatever its
// pidfile lock says (QEMU drops the lock while it shuts down).
func Ours(id Identity) bool {
	if Exited(id) || id.Marker == "" {
		return false
	}
	p, err := process.NewProcess(int32(id.PID))
	if err != nil {
		return false
	}
	args, err := p.CmdlineSlice()
	return err == nil && hasMarker(args, id.Marker)
}
