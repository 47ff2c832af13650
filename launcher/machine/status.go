package machine

import (
	"context"
	"fmt"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/vmfile"
)

// Status implements backend.Backend. A stale record is reported as stopped
// and cleaned when no other command holds the machine.
func (mg *Manager) Status(ctx context.Context, names []string) ([]backend.Status, error) {
	ms, err := mg.pick(names)
	if err != nil {
		return nil, err
	}
	var out []backend.Status
	for _, m := range ms {
		s, err := mg.status(ctx, m)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (mg *Manager) status(ctx context.Context, m *Machine) (backend.Status, error) {
	if err := mg.migrate(m); err != nil {
		return backend.Status{}, err
	}
	o, err := mg.observe(ctx, m)
	if err != nil {
		return backend.Status{}, err
	}
	s := backend.Status{Name: m.Name, Backend: mg.d.Kind(), State: o.state, Reason: o.reason, Checkout: mg.vf.Dir}
	if o.stale {
		if lk, err := m.VM.Lock("devvm status"); err == nil {
			mg.cleanStale(ctx, m, o)
			lk.Unlock()
		}
		s.Reason = "stale record cleaned: " + o.reason
	}
	if o.rec == nil || o.state == backend.Stopped {
		s.Hint = fmt.Sprintf("`devvm up %s` starts it", m.Name)
		return s, nil
	}
	rec := o.rec
	if rec.Process != nil {
		s.PID = rec.Process.PID
		if cpu, rss, err := proc.Usage(rec.Process.PID); err == nil {
			s.CPU, s.RSS = cpu, rss
		}
	}
	if !rec.Started.IsZero() {
		s.Started = rec.Started
		s.Uptime = mg.env.Now().Sub(rec.Started).Truncate(time.Second).String()
	}
	s.Accel, s.BuildKey = rec.Accel, rec.BuildKey
	if rec.SSHPort != 0 {
		s.SSH = fmt.Sprintf("%s:%d", rec.SSHHost, rec.SSHPort)
	}
	s.Shares, s.Forwards = append(s.Shares, rec.Shares...), rec.Forwards
	if rec.Ready {
		s.Shares = append(s.Shares, ShareStatus(SSHSpecs(mg.vf), rec.SSHShares)...)
	}
	s.ShareList, s.ForwardList = mg.shareList(rec), mg.forwardList()
	switch {
	case o.state == backend.Broken && rec.LoginRefused != "":
		s.Hint = "the guest's OS config must authorize one of the keys devvm offered for its user; `devvm halt " + m.Name + "` stops it"
	case o.state == backend.Broken:
		s.Hint = fmt.Sprintf("`devvm halt %s` stops it (escalating as needed), then `devvm up %s`", m.Name, m.Name)
	default:
		if why := mg.d.Outdated(ctx, m, rec); why != "" {
			s.Outdated = true
			s.Hint = "outdated (" + why + "): `devvm reload " + m.Name + "` boots the current build"
		}
	}
	if d, ok := mg.d.(Describer); ok {
		d.Describe(m, rec, &s)
	}
	return s, nil
}

// SSHTarget implements backend.Backend: only a running machine has one.
func (mg *Manager) SSHTarget(ctx context.Context, name string) (*sshx.Target, error) {
	m, rec, err := mg.running(ctx, name)
	if err != nil {
		return nil, err
	}
	return mg.d.Target(m, rec)
}

// SSHConfig implements backend.Backend.
func (mg *Manager) SSHConfig(ctx context.Context, name string) (string, error) {
	m, rec, err := mg.running(ctx, name)
	if err != nil {
		return "", err
	}
	return mg.d.SSHConfig(m, rec)
}

// running returns a machine that runs and answered SSH at this boot.
func (mg *Manager) running(ctx context.Context, name string) (*Machine, *Record, error) {
	m, err := mg.one(name)
	if err != nil {
		return nil, nil, err
	}
	if err := mg.migrate(m); err != nil {
		return nil, nil, err
	}
	o, err := mg.observe(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	if o.state != backend.Running {
		return nil, nil, mg.errNotRunning(m, o)
	}
	return m, o.rec, nil
}

// shareList is the structured state of the machine's shares: the Vmfile's
// virtio shares (Guix VMs) as QEMU serves them, and its `mode = "ssh"`
// shares with their servers.
func (mg *Manager) shareList(rec *Record) []backend.ShareStatus {
	var out []backend.ShareStatus
	for _, sh := range mg.vf.Shares {
		st := backend.ShareStatus{Host: mg.vf.Resolve(sh.Host), Guest: sh.Guest, Tag: sh.Tag, Mode: sh.Mode, ReadOnly: sh.ReadOnly}
		switch {
		case sh.Mode == vmfile.ShareVirtio && mg.d.Kind() != vmfile.BackendGuix:
			continue
		case sh.Mode == vmfile.ShareSSH:
			i := Index(rec.SSHShares, sh.Tag)
			switch {
			case !rec.Ready:
				st.Problem = "the VM has not answered SSH yet"
			case i < 0:
				st.Problem = "no server was started: run `devvm up` to restore"
			case proc.Check(rec.SSHShares[i].Identity).State == proc.Alive:
				st.Server = rec.SSHShares[i].Identity.PID
			default:
				st.Problem = "server exited: run `devvm up` to restore (its log: " + rec.SSHShares[i].Log + ")"
			}
		}
		out = append(out, st)
	}
	return out
}

// forwardList is the structured list of the Vmfile's forwards (Guix VMs;
// a microvm's forwards are in its own config).
func (mg *Manager) forwardList() []backend.ForwardStatus {
	if mg.d.Kind() != vmfile.BackendGuix {
		return nil
	}
	var out []backend.ForwardStatus
	for _, f := range mg.vf.Forwards {
		out = append(out, backend.ForwardStatus{Proto: f.Proto, Bind: f.Bind, Host: f.Host, Guest: f.Guest})
	}
	return out
}
