package engine

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/qmp"
	"github.com/devvm/devvm/launcher/share"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// Runtime is .devvm/<vm>/runtime.json: what devvm knows of a started VM.
type Runtime struct {
	Identity   proc.Identity `json:"identity"`
	Accel      string        `json:"accel"`
	SSHPort    int           `json:"ssh_port"`
	Forwards   []string      `json:"forwards,omitempty"`
	Shares     []string      `json:"shares,omitempty"`
	QMP        string        `json:"qmp"`
	Console    string        `json:"console,omitempty"`
	BuildKey   string        `json:"build_key"`
	RunVM      string        `json:"run_vm"`
	Disk       string        `json:"disk,omitempty"`
	Argv       []string      `json:"argv"`
	Started    time.Time     `json:"started"`
	Foreground bool          `json:"foreground,omitempty"`
	// Ready is set once SSH answered with our key at this boot.
	Ready bool `json:"ready"`
	// SSHShares are the servers of the `mode = "ssh"` shares (sshshare.go).
	SSHShares []share.Served `json:"ssh_shares,omitempty"`
}

// ciphers is the SSH cipher preference for this boot: under TCG the guest's
// sshd does its cryptography on an emulated CPU without AES-NI.
func (rt *Runtime) ciphers() []string {
	if rt.Accel == "tcg" {
		return sshx.EmulatedCPUCiphers
	}
	return nil
}

// observed is the runtime record checked against reality.
type observed struct {
	rt     *Runtime // nil when there is no record
	state  string   // backend.Running / Stopped / Broken
	reason string
	stale  bool // a record exists but its process is gone or foreign
}

// observe reads the runtime record and checks it: the pid must be our QEMU
// (proc.Check: start time, command line marker, boot id, pidfile lock) and
// its QMP socket must answer.
func (g *Guix) observe(ctx context.Context) (observed, error) {
	var rt Runtime
	ok, err := state.ReadJSON(g.VM.RuntimeRecord(), &rt)
	if err != nil {
		return observed{}, err
	}
	if !ok {
		return observed{state: backend.Stopped}, nil
	}
	v := proc.Check(rt.Identity)
	switch v.State {
	case proc.Gone:
		return observed{rt: &rt, state: backend.Stopped, reason: v.Reason, stale: true}, nil
	case proc.Foreign:
		return observed{rt: &rt, state: backend.Stopped, reason: v.Reason, stale: true}, nil
	case proc.Unknown:
		return observed{rt: &rt, state: backend.Broken, reason: "devvm cannot tell whether QEMU runs: " + v.Reason}, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := qmp.Dial(qctx, rt.QMP)
	if err != nil {
		return observed{rt: &rt, state: backend.Broken, reason: "QEMU (pid " + fmt.Sprint(rt.Identity.PID) + ") is alive but its QMP socket does not answer: " + err.Error()}, nil
	}
	defer c.Close()
	st, err := c.QueryStatus(qctx)
	if err != nil {
		return observed{rt: &rt, state: backend.Broken, reason: "QMP query-status failed: " + err.Error()}, nil
	}
	if !st.Running {
		return observed{rt: &rt, state: backend.Broken, reason: "QEMU is alive but the guest is " + st.Status}, nil
	}
	if !rt.Ready {
		return observed{rt: &rt, state: backend.Starting, reason: "booting: SSH has not answered yet"}, nil
	}
	return observed{rt: &rt, state: backend.Running}, nil
}

// forget removes the runtime files of a VM whose QEMU is gone. It never
// touches a process.
func (g *Guix) forget() {
	os.Remove(g.VM.RuntimeRecord())
	os.Remove(g.VM.Pidfile())
	os.RemoveAll(g.VM.RuntimeDir())
}

// cleanStale drops a stale record and says why.
func (g *Guix) cleanStale(o observed) {
	if o.stale {
		g.stopSSHShares(context.Background(), o.rt)
		g.UI.Printf("cleaned a stale record of VM %q: %s", g.VF.Name, o.reason)
		g.forget()
	}
}
