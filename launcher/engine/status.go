package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/devvm/devvm/launcher/backend"
	"github.com/devvm/devvm/launcher/proc"
)

// Status implements backend.Backend. A stale record (QEMU gone or its pid
// reused) is reported as stopped and cleaned when no other command holds
// the VM.
func (g *Guix) Status(ctx context.Context, names []string) ([]backend.Status, error) {
	if err := g.checkNames(names); err != nil {
		return nil, err
	}
	o, err := g.observe(ctx)
	if err != nil {
		return nil, err
	}
	s := backend.Status{Name: g.VF.Name, Backend: g.Kind(), State: o.state, Reason: o.reason, Checkout: g.VF.Dir}
	if o.stale {
		if lk, err := g.VM.Lock("devvm status"); err == nil {
			g.forget()
			lk.Unlock()
		}
		s.Reason = "stale record cleaned: " + o.reason
	}
	if o.rt == nil || o.state == backend.Stopped {
		s.Hint = "`devvm up` starts it"
		return []backend.Status{s}, nil
	}
	rt := o.rt
	s.PID, s.Started, s.Accel = rt.Identity.PID, rt.Started, rt.Accel
	s.Uptime = g.Env.Now().Sub(rt.Started).Truncate(time.Second).String()
	s.SSH = fmt.Sprintf("127.0.0.1:%d", rt.SSHPort)
	s.Shares, s.Forwards, s.BuildKey = rt.Shares, rt.Forwards, rt.BuildKey
	s.Shares = append(s.Shares, g.sshShareStatus(rt)...)
	if cpu, rss, err := proc.Usage(rt.Identity.PID); err == nil {
		s.CPU, s.RSS = cpu, rss
	}
	if key, err := g.CurrentKey(); err == nil && key != rt.BuildKey {
		s.Outdated = true
		s.Hint = "outdated: the build inputs changed since boot; run `devvm reload`"
	}
	if o.state == backend.Broken {
		s.Hint = "`devvm halt` stops it (escalating as needed), then `devvm up`"
	}
	return []backend.Status{s}, nil
}
