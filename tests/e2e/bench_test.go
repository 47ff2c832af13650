//go:build e2e

package e2e

// Benchmarks of the lifecycle and SSH targets, on the real tiny guest.
// They report metrics (ms, ratios) rather than asserting times:
//
//	go test -tags e2e -run '^$' -bench . -benchtime 1x ./tests/e2e/

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/devvm/devvm/launcher/sshx"
)

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchWorld(b *testing.B, name string) *world {
	if skipWhy != "" {
		b.Skip(skipWhy)
	}
	return newWorld(b, name)
}

// BenchmarkSSHTrue compares `devvm ssh -- true` with OpenSSH's
// `ssh -F <ssh-config> devvm-x true` on the same guest, side by side
// (medians of 11 alternating runs each), and reports the ratio.
func BenchmarkSSHTrue(b *testing.B) {
	w := benchWorld(b, "benchssh")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("up")
	cfg := filepath.Join(b.TempDir(), "config")
	os.WriteFile(cfg, []byte(w.ok("ssh-config").stdout), 0o600)
	host := "devvm-" + vmName(w.checkout)
	for i := 0; i < b.N; i++ {
		var dv, os_ []time.Duration
		for r := 0; r < 11; r++ {
			start := time.Now()
			w.ok("ssh", "--", "true")
			dv = append(dv, time.Since(start))
			start = time.Now()
			if out, err := exec.Command("ssh", "-F", cfg, host, "true").CombinedOutput(); err != nil {
				b.Fatalf("openssh: %v %s", err, out)
			}
			os_ = append(os_, time.Since(start))
		}
		b.ReportMetric(ms(median(dv)), "devvm-ms")
		b.ReportMetric(ms(median(os_)), "openssh-ms")
		b.ReportMetric(float64(median(dv))/float64(median(os_)), "devvm/openssh")
	}
}

// BenchmarkLifecycle measures the lifecycle targets on one VM:
// readiness lag (an independent poller sees the guest's sshd accept the
// key → `up` returns), re-`up` of a running VM, `status`, halt of a
// healthy guest, and devvm processes left per running VM.
func BenchmarkLifecycle(b *testing.B) {
	w := benchWorld(b, "benchlife")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("build")
	for i := 0; i < b.N; i++ {
		// Readiness lag.
		upDone := make(chan time.Time, 1)
		go func() {
			w.run("up")
			upDone <- time.Now()
		}()
		firstOK := pollSSH(b, w, 30*time.Minute)
		lag := (<-upDone).Sub(firstOK)
		b.ReportMetric(ms(lag), "ready-lag-ms")

		var reUp, st []time.Duration
		for r := 0; r < 11; r++ {
			start := time.Now()
			w.ok("up")
			reUp = append(reUp, time.Since(start))
			start = time.Now()
			w.ok("status")
			st = append(st, time.Since(start))
		}
		b.ReportMetric(ms(median(reUp)), "reup-ms")
		b.ReportMetric(ms(median(st)), "status-ms")

		out, _ := exec.Command("pgrep", "-f", devvmBin).Output()
		b.ReportMetric(float64(len(strings.Fields(string(out)))), "resident-devvm-procs")

		r := w.ok("halt")
		b.ReportMetric(ms(r.took), "halt-ms")

		w.ok("up")
		guest := guestShutdown(w)
		b.ReportMetric(ms(guest), "guest-shutdown-ms")
		b.ReportMetric(ms(r.took-guest), "halt-overhead-ms")
	}
}

// guestShutdown is the guest's own shutdown time, to compare with `devvm
// halt`: the command devvm's halt sends (on the Guix-like guest, `sudo -n
// halt`, Shepherd's, which powers off), issued with `devvm ssh`, until QEMU
// exits. It leaves the VM's record for `devvm status` to clean.
func guestShutdown(w *world) time.Duration {
	pid := int(w.status()["pid"].(float64))
	start := time.Now()
	w.run("ssh", "--", "sh", "-c", "sudo -n poweroff || sudo -n halt")
	for alive(pid) && time.Since(start) < time.Minute {
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	w.ok("status") // cleans the record
	return took
}

// BenchmarkHaltOverhead: `devvm halt` of a healthy Guix-like guest is a
// clean power-off over SSH; its cost over the guest's own shutdown (medians
// of 3 alternating runs each) is the target, ≤ 0.5 s.
func BenchmarkHaltOverhead(b *testing.B) {
	w := benchWorld(b, "benchhalt")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	w.ok("build")
	for i := 0; i < b.N; i++ {
		var halt, guest []time.Duration
		for r := 0; r < 3; r++ {
			w.ok("up")
			res := w.ok("halt")
			if !strings.Contains(res.stderr, "powered off over SSH") {
				b.Fatalf("halt was not a clean power-off over SSH:\n%s", res.stderr)
			}
			halt = append(halt, res.took)
			w.ok("up")
			guest = append(guest, guestShutdown(w))
		}
		b.ReportMetric(ms(median(halt)), "halt-ms")
		b.ReportMetric(ms(median(guest)), "guest-shutdown-ms")
		b.ReportMetric(ms(median(halt)-median(guest)), "halt-overhead-ms")
	}
}

// pollSSH is the independent poller: it tries a key-authenticated SSH
// handshake (with devvm's user key, accepting the new boot's host key)
// every 50 ms and returns when one succeeds.
func pollSSH(b *testing.B, w *world, limit time.Duration) time.Time {
	key := filepath.Join(w.home, ".local/share/devvm")
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		port := w.sshPort()
		if port != "" {
			k, err := sshx.EnsureUserKey(key)
			if err == nil {
				kh := filepath.Join(b.TempDir(), "kh")
				t := sshx.Target{Addr: "127.0.0.1:" + port, User: "dev", Key: k, KnownHosts: kh, HostKeyAlias: "poller", HandshakeTimeout: time.Second}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err = sshx.Pin(ctx, t)
				cancel()
				if err == nil {
					return time.Now()
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatal("guest never accepted SSH")
	return time.Time{}
}

// BenchmarkHaltHung: a guest that ignores poweroff and the ACPI button is
// stopped by escalation; the target is the configured bound + ≤ 1 s.
func BenchmarkHaltHung(b *testing.B) {
	if skipWhy != "" {
		b.Skip(skipWhy)
	}
	w := newWorld(b, "benchhung", "DEVVM_STANDIN_APPEND=devvm.test=hang")
	w.setVmfile(`memory = "512M"`, `cpus = 1`)
	const bound = 10 * time.Second
	for i := 0; i < b.N; i++ {
		w.ok("up")
		r := w.ok("halt", "--timeout", bound.String())
		b.ReportMetric(ms(r.took), "halt-ms")
		b.ReportMetric(ms(r.took-bound), "over-bound-ms")
	}
}
