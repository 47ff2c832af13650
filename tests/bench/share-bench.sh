#!/bin/bash
# share-bench.sh — compare the two ways devvm shares a checkout with the real tiny test guest (tests/guest):
# QEMU's own virtio-9p (share mode "virtio") and devvm's 9P over SSH (share mode "ssh"), on the same guest and the
# same files:
#   - sequential read of a 256 MiB file: dd to /dev/null in the guest (MB/s);
#   - find + stat over a 20,000-file tree (200 directories of 100 files) in the guest (seconds).
# 9P over SSH is measured with each guest SSH server in SSHD: dropbear (the e2e guest) and OpenSSH (what Guix guests
# run). Two reference transfers, host → guest like a 9P read, explain the figures:
#   - an SSH session: 256 MiB piped into `devvm ssh -- dd of=/dev/null`, timed on the host minus the time of
#     `devvm ssh -- true` (what the guest's sshd decrypts per second, plus a pipe to dd);
#   - plain TCP through QEMU's user network (socat on the host → bash /dev/tcp in the guest), no SSH and no 9P: the
#     ceiling of any transport over the guest's network.
# Each figure is the best of RUNS runs (default 3; find+stat: STAT_RUNS, default 1, as it takes minutes over SSH under
# TCG); the script prints them and the ratios (ssh / virtio).
# Timings of the shares are taken inside the guest with bash's `time`, so boot and SSH setup are not counted.
#
# Usage: tests/bench/share-bench.sh            (as root, like the e2e tier; needs qemu-system-x86_64, go, socat, apt lists)
# Environment: RUNS=N; STAT_RUNS=N (0 skips find+stat over SSH); SSHD="dropbear openssh" (either or both); KEEP=1
# keeps the scratch directory.
set -euo pipefail

runs="${RUNS:-3}"
stat_runs="${STAT_RUNS:-1}"
read -r -a sshds <<<"${SSHD:-dropbear openssh}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
scratch="$(mktemp -d /tmp/devvm-share-bench.XXXXXX)"
rt="$(mktemp -d /tmp/dvbench.XXXXXX)" # short: QMP socket paths are limited to 107 bytes
cleanup() {
	[[ -x "$scratch/devvm" && -d "$scratch/co" ]] && (cd "$scratch/co" && env "${envs[@]}" "$scratch/devvm" destroy -f >/dev/null 2>&1) || true
	[[ -n "${socat_pid:-}" ]] && kill "$socat_pid" 2>/dev/null || true
	[[ "${KEEP:-}" == 1 ]] || rm -rf "$scratch"
	rm -rf "$rt"
}
envs=()
trap cleanup EXIT
log() { printf 'share-bench: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}
for s in "${sshds[@]}"; do
	[[ "$s" == dropbear || "$s" == openssh ]] || die "SSHD may list dropbear and openssh, not '$s'"
done
command -v socat >/dev/null || die "socat is not installed (apt-get install socat)"

log "building devvm and the test guests (${sshds[*]})"
(cd "$repo" && go build -o "$scratch/devvm" ./cmd/devvm)
declare -A kernel initrd
for s in dropbear "${sshds[@]}"; do
	guest="$(DEVVM_TEST_GUEST_SSHD="$s" "$repo/tests/guest/build-guest.sh")"
	kernel[$s]="$(sed -n 's/^KERNEL=//p' <<<"$guest")"
	initrd[$s]="$(sed -n 's/^INITRD=//p' <<<"$guest")"
done
co="$scratch/co"
base_envs=(HOME="$scratch/home" XDG_DATA_HOME="$scratch/home/.local/share" XDG_STATE_HOME="$scratch/home/.local/state"
	XDG_RUNTIME_DIR="$rt" PATH="$repo/tests/standin:$PATH" DEVVM_STANDIN_STORE="$scratch/store")
envs=("${base_envs[@]}" DEVVM_TEST_KERNEL="${kernel[dropbear]}" DEVVM_TEST_INITRD="${initrd[dropbear]}")
mkdir -p "$scratch/home" "$co"
dv() { (cd "$co" && env "${envs[@]}" "$scratch/devvm" "$@"); }
now() { date +%s.%N; }

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

# best_of N CMD: run the guest command N times, print the smallest elapsed seconds.
best_of() {
	local best="" t
	for _ in $(seq "$1"); do
		t="$(dv ssh -- bash -c "TIMEFORMAT=%R; { time $2 >/dev/null 2>&1; } 2>&1" | tail -1)"
		[[ "$t" =~ ^[0-9.]+$ ]] || die "unexpected timing output: $t"
		if [[ -z "$best" ]] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then best="$t"; fi
	done
	printf '%s' "$best"
}
# best_host CMD...: run a host command RUNS times, print the smallest elapsed seconds minus one `devvm ssh -- true`.
best_host() {
	local best="" t0 t1 t2 t
	for _ in $(seq "$runs"); do
		t0="$(now)"
		dv ssh -- true
		t1="$(now)"
		"$@"
		t2="$(now)"
		t="$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {printf "%.3f", (c - b) - (b - a)}')"
		if [[ -z "$best" ]] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then best="$t"; fi
	done
	printf '%s' "$best"
}
channel() { dv ssh -- dd of=/dev/null bs=1M <"$co/big" 2>/dev/null; }

# Free host port for the plain-TCP ceiling.
tcp_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
plain_tcp() {
	socat -u "FILE:$co/big" "TCP-LISTEN:$tcp_port,bind=127.0.0.1,reuseaddr" &
	socat_pid=$!
	sleep 0.3
	local t
	t="$(dv ssh -- bash -c "TIMEFORMAT=%R; { time (exec 3</dev/tcp/10.0.2.2/$tcp_port && dd bs=1M of=/dev/null <&3 2>/dev/null); } 2>&1" | tail -1)"
	wait "$socat_pid" || true
	socat_pid=""
	printf '%s' "$t"
}

declare -A read_s stat_s chan_s
runs_of() { # runs_of MODE SSHD
	local mode="$1" sshd="$2" key="$1/$2"
	log "mode $mode, guest sshd $sshd: booting"
	sed -i "s/^#* *mode = .*/mode = \"$mode\"/" "$co/Vmfile"
	cp "$scratch/$mode.scm" "$co/dev-vm.scm"
	envs=("${base_envs[@]}" DEVVM_TEST_KERNEL="${kernel[$sshd]}" DEVVM_TEST_INITRD="${initrd[$sshd]}")
	dv up --rebuild >/dev/null 2>"$scratch/up-$mode-$sshd.log" || {
		cat "$scratch/up-$mode-$sshd.log" >&2
		exit 1
	}
	local procs mounts n
	procs="$(dv ssh -- ps)"
	case "$sshd" in
	dropbear) grep -q 'dropbear' <<<"$procs" || die "the guest does not run dropbear" ;;
	openssh) grep -q 'sshd: /usr/sbin/sshd' <<<"$procs" || die "the guest does not run OpenSSH's sshd" ;;
	esac
	mounts="$(dv ssh -- cat /proc/mounts)"
	grep -q " /mnt/$name 9p " <<<"$mounts" || die "no 9p mount on /mnt/$name in mode $mode"
	grep " /mnt/$name 9p " <<<"$mounts" | sed 's/^/share-bench:   /' >&2
	# Same work in both modes: nothing cached in the guest (9p cache=none in both).
	n="$(dv ssh -- sh -c "find /mnt/$name/tree -type f | wc -l")"
	[[ "$n" -eq 20000 ]] || die "the guest sees $n files in the tree, want 20000"
	read_s[$key]="$(best_of "$runs" "dd if=/mnt/$name/big of=/dev/null bs=1M")"
	if [[ "$mode" == virtio || "$stat_runs" -gt 0 ]]; then
		stat_s[$key]="$(best_of "$(( stat_runs > 0 ? stat_runs : 1 ))" "find /mnt/$name/tree -exec stat -c '%s %Y' {} +")"
	fi
	log "mode $mode, sshd $sshd: read 256 MiB in ${read_s[$key]} s, find+stat in ${stat_s[$key]:-(skipped)} s"
	if [[ "$mode" == ssh ]]; then
		chan_s[$sshd]="$(best_host channel)"
		log "sshd $sshd: 256 MiB through an SSH session in ${chan_s[$sshd]} s"
	else
		tcp_s="$(plain_tcp)"
		log "plain TCP through QEMU's user network: 256 MiB in $tcp_s s"
	fi
	dv halt >/dev/null 2>&1
}

runs_of virtio dropbear
for s in "${sshds[@]}"; do runs_of ssh "$s"; done

mbs() { awk -v s="$1" 'BEGIN {printf "%.1f", 268.435456 / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf 'share benchmark (tiny guest under %s, 1 vCPU; best of %d runs, find+stat best of %d)\n' \
	"$([[ -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo && echo KVM || echo TCG)" "$runs" "$(( stat_runs > 0 ? stat_runs : 1 ))"
printf '%-44s %14s %14s\n' "" "read 256 MiB" "find+stat 20k"
printf '%-44s %9s MB/s %12s s\n' "virtio-9p (QEMU)" "$(mbs "${read_s[virtio/dropbear]}")" "${stat_s[virtio/dropbear]}"
for s in "${sshds[@]}"; do
	k="ssh/$s"
	st="${stat_s[$k]:-}"
	printf '%-44s %9s MB/s %12s s   ssh/virtio: %sx read time%s\n' "9P over SSH, guest $s" "$(mbs "${read_s[$k]}")" "${st:-—}" \
		"$(ratio "${read_s[$k]}" "${read_s[virtio/dropbear]}")" "${st:+, $(ratio "$st" "${stat_s[virtio/dropbear]}")x find+stat time}"
done
printf 'reference transfers (host → guest, 256 MiB):\n'
for s in "${sshds[@]}"; do
	printf '  %-42s %9s MB/s\n' "SSH session stdin → dd, guest $s" "$(mbs "${chan_s[$s]}")"
done
printf '  %-42s %9s MB/s\n' "plain TCP via QEMU user net (no SSH, no 9P)" "$(mbs "$tcp_s")"
