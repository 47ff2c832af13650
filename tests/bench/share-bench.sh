#!/bin/bash
# share-bench.sh — compare the two ways devvm shares a checkout with the real tiny test guest (tests/guest):
# QEMU's own virtio-9p (share mode "virtio") and devvm's 9P over SSH (share mode "ssh"), on the same guest and the
# same files:
#   - sequential read of a 256 MiB file: dd to /dev/null in the guest (MB/s);
#   - find + stat over a 20,000-file tree (200 directories of 100 files) in the guest (seconds).
# Each figure is the best of RUNS runs (default 3); the script prints both and the ratios (ssh / virtio).
# Timings are taken inside the guest with bash's `time`, so boot and SSH session setup are not counted.
#
# Usage: tests/bench/share-bench.sh            (as root, like the e2e tier; needs qemu-system-x86_64, go, apt lists)
# Environment: RUNS=N, KEEP=1 keeps the scratch directory.
set -euo pipefail

runs="${RUNS:-3}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
scratch="$(mktemp -d /tmp/devvm-share-bench.XXXXXX)"
rt="$(mktemp -d /tmp/dvbench.XXXXXX)" # short: QMP socket paths are limited to 107 bytes
cleanup() {
	[[ -x "$scratch/devvm" && -d "$scratch/co" ]] && (cd "$scratch/co" && env "${envs[@]}" "$scratch/devvm" destroy -f >/dev/null 2>&1) || true
	[[ "${KEEP:-}" == 1 ]] || rm -rf "$scratch"
	rm -rf "$rt"
}
envs=()
trap cleanup EXIT
log() { printf 'share-bench: %s\n' "$*" >&2; }

log "building devvm and the test guest"
(cd "$repo" && go build -o "$scratch/devvm" ./cmd/devvm)
guest="$("$repo/tests/guest/build-guest.sh")"
kernel="$(sed -n 's/^KERNEL=//p' <<<"$guest")"
initrd="$(sed -n 's/^INITRD=//p' <<<"$guest")"
envs=(HOME="$scratch/home" XDG_DATA_HOME="$scratch/home/.local/share" XDG_STATE_HOME="$scratch/home/.local/state"
	XDG_RUNTIME_DIR="$rt" PATH="$repo/tests/standin:$PATH" DEVVM_STANDIN_STORE="$scratch/store"
	DEVVM_TEST_KERNEL="$kernel" DEVVM_TEST_INITRD="$initrd")
co="$scratch/co"
mkdir -p "$scratch/home" "$co"
dv() { (cd "$co" && env "${envs[@]}" "$scratch/devvm" "$@"); }

log "writing the files: a 256 MiB file and a 20,000-file tree"
dd if=/dev/urandom of="$co/big" bs=1M count=256 status=none
for d in $(seq -w 0 199); do
	mkdir -p "$co/tree/d$d"
	(cd "$co/tree/d$d" && for f in $(seq -w 0 99); do printf '%s\n' "$d$f" >"f$f"; done)
done

dv init >/dev/null 2>&1
name="$(basename "$co")"
sed -i -e 's/^# *memory = .*/memory = "1G"/' -e 's/^# *cpus = .*/cpus = 1/' "$co/Vmfile"
grep -q '^memory = ' "$co/Vmfile" || sed -i '0,/^\[/s//memory = "1G"\ncpus = 1\n[/' "$co/Vmfile"
cp "$co/dev-vm.scm" "$scratch/virtio.scm"
# The ssh-mode config declares no 9p file-system for the share (devvm mounts it after boot).
python3 - "$co/dev-vm.scm" "$scratch/ssh.scm" <<'EOF'
import re, sys
s = open(sys.argv[1]).read()
t = re.sub(r'(?s)\s*\(file-system\s+\(mount-point "[^"]*"\)\s+\(device "[^"]*"\)\s+\(type "9p"\).*?\(mount-may-fail\? #t\)\)', '', s)
assert t != s, "no 9p file-system in dev-vm.scm"
open(sys.argv[2], "w").write(t)
EOF

# best_of CMD: run the guest command RUNS times, print the smallest elapsed seconds.
best_of() {
	local best="" t
	for _ in $(seq "$runs"); do
		t="$(dv ssh -- bash -c "TIMEFORMAT=%R; { time $1 >/dev/null 2>&1; } 2>&1" | tail -1)"
		[[ "$t" =~ ^[0-9.]+$ ]] || {
			log "unexpected timing output: $t"
			exit 1
		}
		if [[ -z "$best" ]] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then best="$t"; fi
	done
	printf '%s' "$best"
}

declare -A read_s stat_s
for mode in virtio ssh; do
	log "mode $mode: booting"
	sed -i "s/^#* *mode = .*/mode = \"$mode\"/" "$co/Vmfile"
	cp "$scratch/$mode.scm" "$co/dev-vm.scm"
	dv up >/dev/null 2>"$scratch/up-$mode.log" || {
		cat "$scratch/up-$mode.log" >&2
		exit 1
	}
	mounts="$(dv ssh -- cat /proc/mounts)"
	grep -q " /mnt/$name 9p " <<<"$mounts" || {
		log "no 9p mount on /mnt/$name in mode $mode"
		exit 1
	}
	grep " /mnt/$name 9p " <<<"$mounts" | sed 's/^/share-bench:   /' >&2
	# Same work in both modes: nothing cached in the guest (9p cache=none in both).
	n="$(dv ssh -- sh -c "find /mnt/$name/tree -type f | wc -l")"
	[[ "$n" -eq 20000 ]] || {
		log "the guest sees $n files in the tree, want 20000"
		exit 1
	}
	read_s[$mode]="$(best_of "dd if=/mnt/$name/big of=/dev/null bs=1M")"
	stat_s[$mode]="$(best_of "find /mnt/$name/tree -exec stat -c '%s %Y' {} +")"
	log "mode $mode: read 256 MiB in ${read_s[$mode]} s, find+stat in ${stat_s[$mode]} s"
	if [[ "$mode" == ssh ]]; then
		# The ceiling of anything carried by this guest's SSH: 256 MiB through a plain SSH channel (guest → host),
		# timed on the host minus the time of `devvm ssh -- true`.
		t0="$(date +%s.%N)"
		dv ssh -- true
		t1="$(date +%s.%N)"
		dv ssh -- dd if=/dev/zero bs=1M count=256 2>/dev/null | cat >/dev/null
		t2="$(date +%s.%N)"
		chan_s="$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {printf "%.3f", (c - b) - (b - a)}')"
	fi
	dv halt >/dev/null 2>&1
done

awk -v rv="${read_s[virtio]}" -v rs="${read_s[ssh]}" -v sv="${stat_s[virtio]}" -v ss="${stat_s[ssh]}" -v runs="$runs" \
	-v cs="$chan_s" 'BEGIN {
	printf "share benchmark (tiny guest, best of %d runs, timed in the guest)\n", runs
	printf "%-34s %12s %12s %14s\n", "", "virtio-9p", "9P over SSH", "ssh / virtio"
	printf "%-34s %9.1f MB/s %7.1f MB/s %11.2fx time\n", "sequential read, 256 MiB (dd)", 268.435456 / rv, 268.435456 / rs, rs / rv
	printf "%-34s %10.2f s %10.2f s %11.2fx time\n", "find + stat, 20,000 files", sv, ss, ss / sv
	printf "plain SSH channel of this guest (ceiling of 9P over SSH): %.1f MB/s\n", 268.435456 / cs
}'
