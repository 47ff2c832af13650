# shellcheck shell=bash
# Shared part of devvm's microvm.nix STAND-INS (tests/microvm/standin/*). These are NOT the real microvm.nix, Nix or
# systemd commands: they follow the real commands' arguments, outputs and exit codes (shared notes microvm-nix.md)
# closely enough for devvm's end-to-end tests, on a fake root instead of /:
#
#   DEVVM_STANDIN_ROOT (required)   the fake "/"; every path below lives under it:
#     nix/store                     the fake store (runners, systems)
#     nix/var/nix/gcroots/          GC roots (auto/ for out-links, microvm/ for microvm's roots)
#     var/lib/microvms/NAME/        the real per-VM layout: current, booted, flake, toplevel, old, control.socket
#     nix/var/nix/profiles/         system generations (nixos-rebuild)
#     run/systemd/microvm@NAME.pid  the stand-in systemd's record of a running unit
#     var/log/journal/microvm@NAME.log  the unit's journal (serial console output of the VM)
#   DEVVM_STANDIN_LOG=FILE          append one line per invocation (argv, shell-quoted)
#   DEVVM_TEST_KERNEL, DEVVM_TEST_INITRD  the tiny guest (tests/guest/build-guest.sh) the runners boot
set -uo pipefail

if [[ -z "${DEVVM_STANDIN_ROOT:-}" || "${DEVVM_STANDIN_ROOT}" != /* ]]; then
	echo "devvm stand-in $(basename "$0"): DEVVM_STANDIN_ROOT must be an absolute fake root (this is a test stand-in, not the real command)" >&2
	exit 1
fi
R="$DEVVM_STANDIN_ROOT"
STORE="$R/nix/store"
GCROOTS="$R/nix/var/nix/gcroots"
STATE_DIR="$R/var/lib/microvms"
UNITS="$R/run/systemd"
JOURNAL="$R/var/log/journal"
mkdir -p "$STORE" "$GCROOTS/auto" "$GCROOTS/microvm" "$STATE_DIR" "$UNITS" "$JOURNAL"

if [[ -n "${DEVVM_STANDIN_LOG:-}" ]]; then
	{
		printf '%s' "$(basename "$0")"
		printf ' %q' "$@"
		printf '\n'
	} >>"$DEVVM_STANDIN_LOG"
fi

# nixhash STRING: a 32-char Nix-base32 store hash of STRING.
nixhash() {
	local hex alpha=0123456789abcdfghijklmnpqrsvwxyz out="" i j v
	hex="$(printf '%s' "$1" | sha256sum)"
	for ((i = 0; i < 40; i += 5)); do
		v=$((16#${hex:i:5}))
		for ((j = 15; j >= 0; j -= 5)); do out+="${alpha:$(((v >> j) & 31)):1}"; done
	done
	printf '%s' "$out"
}

# unit_pid NAME: the pid of microvm@NAME when it runs (its recorded pid, alive, argv0 microvm@NAME), else nothing.
unit_pid() {
	local pid
	pid="$(cat "$UNITS/microvm@$1.pid" 2>/dev/null)" || return 1
	[[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
	[[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == "microvm@$1 "* ]] || return 1
	printf '%s' "$pid"
}

# journal NAME MESSAGE: a systemd-style line in the unit's journal.
journal() {
	printf '%s hypervisor systemd[1]: %s\n' "$(date '+%b %d %H:%M:%S')" "$2" >>"$JOURNAL/microvm@$1.log"
}

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# flake_dir REF: the directory of a flakeref (absolute paths only; the stand-ins have no registry).
flake_dir() {
	local ref="${1%%\?*}"
	case "$ref" in
	git+file://*) ref="${ref#git+file://}" ;;
	path:*) ref="${ref#path:}" ;;
	/*) ;;
	*) die "cannot find flake 'flake:$ref' in the flake registries (devvm stand-in: give an absolute path)" ;;
	esac
	[[ -f "$ref/flake.nix" ]] || die "path '$ref/flake.nix' does not exist"
	printf '%s' "$ref"
}
