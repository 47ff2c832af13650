#!/usr/bin/env bash
# chroot.sh: a Debian sid chroot with the Debian-packaged GNU Guix (1.5.0) and
# its daemon, for devvm's real-Guix test tier (tests/guix/guix_test.go).
#
# Usage:
#   chroot.sh up                         build the chroot if needed, mount, start guix-daemon
#   chroot.sh down                       stop the daemon, unmount everything under the chroot
#   chroot.sh run [-n] [-b DIR[:INSIDE]]... [-C DIR] [--] CMD...
#                                        run CMD inside the chroot; each -b DIR is bind-mounted
#                                        at INSIDE (default: the same path) for the duration of
#                                        CMD; -C DIR is the working directory inside the chroot;
#                                        -n runs CMD without network (own network namespace)
#   chroot.sh path                       print the chroot directory
#   chroot.sh daemon-stop | daemon-start stop/start only the daemon (for recording errors)
#
# The chroot is cached in ${DEVVM_GUIX_CHROOT:-${DEVVM_TEST_CACHE:-/var/cache/devvm-test}/guix-sid}
# and rebuilt when missing or incomplete. It is built in a temporary directory
# next to it and renamed at the end, so an interrupted build never leaves a
# half chroot behind.
#
# Exit status: 0 ok; 2 a prerequisite is missing (not root, no mmdebstrap...),
# with one line on stderr saying which; 1 anything else. `run` exits with
# CMD's status.
set -euo pipefail

prog=${0##*/}
# chroot, mount and mmdebstrap live in sbin, which a non-login root shell or
# `go test` may not have in PATH.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
cache=${DEVVM_TEST_CACHE:-/var/cache/devvm-test}
root=${DEVVM_GUIX_CHROOT:-$cache/guix-sid}
marker=.devvm-guix-chroot-ok # written last by a complete build
socket=/var/guix/daemon-socket/socket
pidfile=/run/devvm-guix-daemon.pid # inside the chroot
daemonlog=/var/log/devvm-guix-daemon.log # inside the chroot

die() { echo "$prog: $*" >&2; exit 1; }
missing() { echo "$prog: $*" >&2; exit 2; }

need_root() {
	[[ $EUID == 0 ]] || missing "needs root (mmdebstrap, chroot and mounts); run it as root or skip the guix tier"
}

need_tool() {
	command -v "$1" >/dev/null 2>&1 || missing "needs $1 on the host (apt-get install $2)"
}

# Commands inside the chroot get a clean, predictable environment.
inchroot() {
	chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

healthy() {
	[[ -f $root/$marker && -x $root/usr/bin/guix && -x $root/usr/bin/guix-daemon ]]
}

build() {
	need_tool mmdebstrap mmdebstrap
	local parent tmp
	parent=$(dirname "$root")
	mkdir -p "$parent"
	if [[ -e $root ]]; then
		echo "$prog: $root is incomplete or broken; rebuilding it" >&2
		unmount_all
		rm -rf --one-file-system "$root"
	fi
	# Leftovers of interrupted builds.
	local old
	for old in "$root".tmp.*; do
		[[ -e $old ]] || continue
		unmount_under "$old"
		rm -rf --one-file-system "$old"
	done
	tmp=$(mktemp -d "$root.tmp.XXXXXX")
	echo "$prog: building Debian sid chroot with guix in $root (mmdebstrap, about a minute)" >&2
	local t0=$SECONDS
	if ! mmdebstrap --quiet --variant=apt \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		--include=guix,ca-certificates sid "$tmp" >&2; then
		rm -rf --one-file-system "$tmp"
		die "mmdebstrap failed (see above); check that the Debian mirror in /etc/apt/sources.list is reachable"
	fi
	# The apt variant has no useradd: add the daemon's build users by hand.
	grep -q '^guixbuild:' "$tmp/etc/group" ||
		echo 'guixbuild:x:30000:guixbuilder1,guixbuilder2' >>"$tmp/etc/group"
	local i
	for i in 1 2; do
		grep -q "^guixbuilder$i:" "$tmp/etc/passwd" ||
			echo "guixbuilder$i:x:3000$i:30000:Guix build user $i:/var/empty:/usr/sbin/nologin" >>"$tmp/etc/passwd"
	done
	mkdir -p "$tmp/var/empty"
	inchroot_tmp() { chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
	[[ -x $tmp/usr/bin/guix-daemon ]] || die "the chroot has no /usr/bin/guix-daemon after installing guix"
	inchroot_tmp guix --version | head -n1 >&2 || true
	touch "$tmp/$marker"
	mv -T "$tmp" "$root"
	echo "$prog: chroot built in $((SECONDS - t0)) s" >&2
}

# Mount points under $1, deepest first.
mounts_under() {
	local dir=$1
	awk -v d="$dir" '{ m = $2; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print m }' /proc/mounts |
		sort -r
}

unmount_under() {
	local m
	while read -r m; do
		[[ -n $m ]] || continue
		umount "$m" 2>/dev/null || umount -l "$m" || echo "$prog: cannot unmount $m" >&2
	done < <(mounts_under "$1")
}

unmount_all() { unmount_under "$root"; }

mounted() { mounts_under "$root" | grep -qx -- "$1"; }

mount_all() {
	mkdir -p "$root/proc" "$root/dev" "$root/sys"
	mounted "$root/proc" || mount -t proc proc "$root/proc"
	mounted "$root/dev" || mount --bind /dev "$root/dev"
	mounted "$root/sys" || mount -t sysfs sysfs "$root/sys"
}

daemon_pid() {
	local pid
	[[ -f $root$pidfile ]] || return 1
	pid=$(<"$root$pidfile")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(readlink "/proc/$pid/root" 2>/dev/null) == "$(realpath "$root")" ]] &&
		echo "$pid"
}

daemon_answers() { inchroot guix gc --list-roots >/dev/null 2>&1; }

daemon_start() {
	if daemon_pid >/dev/null; then
		return 0
	fi
	mkdir -p "$root/run" "$root/var/log"
	setsid chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		guix-daemon --build-users-group=guixbuild --disable-chroot \
		>>"$root$daemonlog" 2>&1 </dev/null &
	echo $! >"$root$pidfile"
	local i
	for i in $(seq 1 120); do
		if daemon_answers; then
			return 0
		fi
		daemon_pid >/dev/null || {
			tail -n 20 "$root$daemonlog" >&2
			die "guix-daemon exited at start (log above, full log in $root$daemonlog)"
		}
		sleep 0.5
	done
	die "guix-daemon started but $socket does not answer after 60 s (log: $root$daemonlog)"
}

daemon_stop() {
	local pid i
	pid=$(daemon_pid) || { rm -f "$root$pidfile"; return 0; }
	kill "$pid"
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	rm -f "$root$pidfile" "$root$socket"
}

cmd_up() {
	need_root
	need_tool chroot coreutils
	need_tool mount mount
	need_tool setsid util-linux
	healthy || build
	mount_all
	daemon_start
}

cmd_down() {
	need_root
	[[ -d $root ]] || return 0
	daemon_stop
	unmount_all
	local left
	left=$(mounts_under "$root")
	[[ -z $left ]] || die "still mounted after unmounting: $left"
}

cmd_run() {
	need_root
	healthy || die "no chroot at $root; run '$prog up' first"
	local binds=() cwd=/ netns=()
	while (($#)); do
		case $1 in
		-b)
			local src=${2%%:*} dst=${2#*:}
			[[ $2 == *:* ]] || dst=$src
			[[ -d $src ]] || die "run: -b $src: not a directory"
			[[ $dst == /* ]] || die "run: -b $2: the path inside the chroot must be absolute"
			binds+=("$(realpath "$src"):$dst")
			shift 2 ;;
		-C) cwd=$2; shift 2 ;;
		-n) need_tool unshare util-linux; netns=(unshare --net); shift ;;
		--) shift; break ;;
		*) break ;;
		esac
	done
	(($#)) || die "run: no command given"
	local b at done_binds=()
	for b in "${binds[@]}"; do
		at=$root${b#*:}
		mkdir -p "$at"
		mount --bind "${b%%:*}" "$at"
		done_binds+=("$at")
	done
	local rc=0
	# shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
	"${netns[@]}" chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@" || rc=$?
	for b in "${done_binds[@]}"; do
		umount "$b" 2>/dev/null || umount -l "$b"
	done
	return "$rc"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
run) shift; cmd_run "$@" ;;
path) echo "$root" ;;
daemon-stop) need_root; daemon_stop ;;
daemon-start) need_root; healthy || die "no chroot at $root; run '$prog up' first"; mount_all; daemon_start ;;
*) echo "usage: $prog up | down | run [-n] [-b DIR[:INSIDE]]... [-C DIR] [--] CMD... | path | daemon-start | daemon-stop" >&2; exit 1 ;;
esac
