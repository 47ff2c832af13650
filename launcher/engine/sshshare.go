package engine

import (
	"context"

	"github.com/devvm/devvm/launcher/share"
	"github.com/devvm/devvm/launcher/state"
)

// The `mode = "ssh"` shares of a Guix VM are served by `devvm share-serve`
// processes managed by launcher/share (process.go) and recorded in the
// runtime record (Runtime.SSHShares).

// startSSHShares starts a server for each `mode = "ssh"` share of the
// Vmfile that has no live one (first boot, or its server died: `up`
// restores it) and records them in the runtime record. The VM must be ready
// (SSH answers with the pinned host key).
func (g *Guix) startSSHShares(ctx context.Context, rt *Runtime) error {
	specs := share.SSHSpecs(g.VF)
	if len(specs) == 0 {
		return nil
	}
	t, err := g.target(rt)
	if err != nil {
		return err
	}
	srv := &share.Servers{Name: g.VF.Name, VM: g.VM, Env: g.Env, UI: g.UI, Phase: g.spinner, Target: *t}
	return srv.Ensure(ctx, specs, &rt.SSHShares, func() error { return state.WriteJSON(g.VM.RuntimeRecord(), rt) })
}

// stopSSHShares stops the recorded share servers (share.StopServers).
func (g *Guix) stopSSHShares(ctx context.Context, rt *Runtime) {
	share.StopServers(ctx, g.UI, rt.SSHShares)
}

// sshShareStatus describes the state of each `mode = "ssh"` share of a
// ready VM for `devvm status`.
func (g *Guix) sshShareStatus(rt *Runtime) []string {
	if !rt.Ready {
		return nil
	}
	return share.StatusLines(share.SSHSpecs(g.VF), rt.SSHShares)
}
