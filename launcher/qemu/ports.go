package qemu

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PortRange is how many ports after the default `up` tries when the
// default SSH port is busy and the Vmfile does not pin it.
const PortRange = 20

// PortFree tells whether a TCP port can be bound on addr.
func PortFree(addr string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// PickSSHPort returns the port to forward SSH from. A pinned port is used
// as is or refused with its owner; otherwise the first free port from
// port to port+PortRange-1 is taken.
func PickSSHPort(port int, pinned bool) (int, error) {
	if PortFree("127.0.0.1", port) {
		return port, nil
	}
	if pinned {
		return 0, fmt.Errorf("SSH port %d on 127.0.0.1 is in use%s; the Vmfile pins it (ssh.port): free it, or change ssh.port (or remove it to let devvm pick a free one)",
			port, ownerSuffix(port))
	}
	for p := port + 1; p < port+PortRange && p <= 65535; p++ {
		if PortFree("127.0.0.1", p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("ports %d to %d on 127.0.0.1 are all in use: set a free ssh.port in the Vmfile", port, port+PortRange-1)
}

func ownerSuffix(port int) string {
	if o := PortOwner(port); o != "" {
		return " by " + o
	}
	return ""
}

// PortOwner names the process listening on a local TCP port ("pid 123
// (sshd)"), or "" when it cannot be found (e.g. another user's process).
func PortOwner(port int) string {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			if p, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil && int(p) == port {
				inodes[fields[9]] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			pid := strings.Split(fd, "/")[2]
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			return fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(string(comm)))
		}
	}
	return ""
}
