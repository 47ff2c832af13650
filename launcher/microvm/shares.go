package microvm

import (
	"context"
	"os"

	"github.com/devvm/devvm/launcher/share"
	"github.com/devvm/devvm/launcher/sshx"
	"github.com/devvm/devvm/launcher/state"
)

// The `mode = "ssh"` shares of the Vmfile are mounted in every machine by
// `devvm share-serve` processes on this machine (launcher/share), started
// once the machine answers SSH and stopped before it goes down. For a
// machine on a hypervisor the server reaches the guest through the
// hypervisor as jump host, like `devvm ssh`. The servers of a machine are
// recorded in .devvm/<vm>/shares.json.

// shareRecord is .devvm/<vm>/shares.json.
type shareRecord struct {
	SSHShares []share.Served `json:"ssh_shares"`
}

func (c *common) sharesPath(name string) string { return c.vm(name).Path("shares.json") }

// shareServers reads the recorded share servers of a machine.
func (c *common) shareServers(name string) ([]share.Served, error) {
	var rec shareRecord
	if _, err := state.ReadJSON(c.sharesPath(name), &rec); err != nil {
		return nil, err
	}
	return rec.SSHShares, nil
}

// startShares starts a server for each `mode = "ssh"` share that has no live
// one, reaching the guest through t (authKeys are the key files behind
// t.Auth). The machine must be ready.
func (c *common) startShares(ctx context.Context, name string, t *sshx.Target, authKeys []string) error {
	specs := share.SSHSpecs(c.vf)
	if len(specs) == 0 {
		return nil
	}
	recs, err := c.shareServers(name)
	if err != nil {
		return err
	}
	srv := &share.Servers{Name: name, VM: c.vm(name), Env: c.env, UI: c.ui, Target: *t, AuthKeys: authKeys}
	return srv.Ensure(ctx, specs, &recs, func() error {
		return state.WriteJSON(c.sharesPath(name), shareRecord{SSHShares: recs})
	})
}

// stopShares stops the recorded share servers of a machine (they unmount in
// the guest first) and forgets them.
func (c *common) stopShares(ctx context.Context, name string) {
	recs, err := c.shareServers(name)
	if err != nil {
		c.ui.Printf("share servers of VM %q: %v", name, err)
		return
	}
	if len(recs) == 0 {
		return
	}
	share.StopServers(ctx, c.ui, recs)
	os.Remove(c.sharesPath(name))
}

// shareStatus describes the `mode = "ssh"` shares of a running machine.
func (c *common) shareStatus(name string) []string {
	specs := share.SSHSpecs(c.vf)
	if len(specs) == 0 {
		return nil
	}
	recs, err := c.shareServers(name)
	if err != nil {
		return []string{"shares: " + err.Error()}
	}
	return share.StatusLines(specs, recs)
}
