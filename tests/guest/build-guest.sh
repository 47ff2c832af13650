#!/bin/bash
# build-guest.sh [CACHE_DIR] — build (or reuse) the tiny QEMU test guest of devvm's end-to-end tests.
#
# The guest is a Debian kernel plus a busybox initramfs that boots to SSH under TCG in seconds and takes its
# configuration from the kernel command line (devvm.user=, devvm.authkeys=, devvm.9p=, devvm.test=; see
# tests/guest/README.md). Everything comes from Debian packages fetched with `apt-get download` at test time.
#
# Two variants (DEVVM_TEST_GUEST):
#   busybox (default)  dropbear (or OpenSSH, DEVVM_TEST_GUEST_SSHD=openssh), busybox `poweroff`, acpid on the power
#                      button, the login user a uid-0 alias behind a sudo shim. The microvm tests boot this one.
#   guix               behaves like a Guix System 1.5.0 guest wherever devvm depends on it (shared notes
#                      guix-guest-facts.md): no `poweroff`, Shepherd-like `halt`/`shutdown`, no ACPI handler, a real
#                      uid-1000 user whose setuid sudo is found only through the login profile's PATH, homes made
#                      after the file systems are mounted, OpenSSH with fresh host keys every boot. The Guix and
#                      Shepherd source lines each behaviour reproduces are cited where it is built below.
#
# Output: on success stdout holds exactly two lines, `KERNEL=<abs path>` and `INITRD=<abs path>`; progress goes to
# stderr. The result is cached in CACHE_DIR (default ${DEVVM_TEST_CACHE:-/var/cache/devvm-test}/guest[-VARIANT])
# under a key that hashes this script and the candidate versions of the packages, so it is rebuilt only when either
# changes. Needs: apt-get/apt-cache with package lists (run `apt-get update` once), dpkg-deb, cpio, gzip, ldd,
# sha256sum.
set -euo pipefail

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() {
	printf 'build-guest: error: %s\n' "$*" >&2
	exit 1
}

# Modules /init loads, in this order (9p over virtio-pci, virtio-net), then virtio_rng (run-vm.sh's virtio-rng-pci
# seeds the kernel RNG, so dropbear does not wait seconds for it under TCG), the ACPI power button + evdev (acpid) and
# virtio_blk (the run-vm.sh disk: devvm's persistent overlay is tested by writing to /dev/vda).
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net
	netfs fscache 9pnet 9pnet_virtio 9pnet_fd 9p virtio_rng button evdev virtio_blk)
# Runtime libraries of dropbear (Debian 12); the ones ldd reports are copied from these packages.
LIB_PKGS=(libtomcrypt1 libtommath1 libgmp10 zlib1g libcrypt1 libc6)

# The OpenSSH server (sshd, ssh-keygen) and the libraries ldd reports for them (Debian 12).
OPENSSH_PKGS=(openssh-server openssh-client libssl3 libaudit1 libcap-ng0 libcap2 libcom-err2 libgcrypt20 libgpg-error0
	libgssapi-krb5-2 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblz4-1 liblzma5 libnsl2 libpam0g
	libselinux1 libsystemd0 libtirpc3 libwrap0 libzstd1)
variant="${DEVVM_TEST_GUEST:-busybox}"
case "$variant" in
busybox)
	# DEVVM_TEST_GUEST_SSHD=openssh swaps dropbear for OpenSSH's sshd, the SSH server of Guix guests (the share
	# benchmark measures with it); that variant is cached apart, in guest-openssh.
	sshd_kind="${DEVVM_TEST_GUEST_SSHD:-dropbear}"
	case "$sshd_kind" in
	dropbear)
		SSHD_PKGS=(dropbear-bin)
		cache_name=guest
		;;
	openssh)
		SSHD_PKGS=("${OPENSSH_PKGS[@]}")
		cache_name=guest-openssh
		;;
	*) die "DEVVM_TEST_GUEST_SSHD must be 'dropbear' or 'openssh', not '$sshd_kind'" ;;
	esac
	# bash (for devvm's 9P-over-SSH mount script: /dev/tcp) and the real git with the libraries ldd reports.
	EXTRA_PKGS=(bash-static git libpcre2-8-0)
	;;
guix)
	# Guix runs OpenSSH (guix:gnu/services/ssh.scm), the full bash (guix:gnu/system.scm:954) and the real sudo.
	[[ "${DEVVM_TEST_GUEST_SSHD:-openssh}" == openssh ]] ||
		die "the guix variant runs OpenSSH's sshd like Guix System; unset DEVVM_TEST_GUEST_SSHD"
	sshd_kind=openssh
	SSHD_PKGS=("${OPENSSH_PKGS[@]}")
	cache_name=guest-guix
	EXTRA_PKGS=(bash libtinfo6 sudo libpam-modules libdb5.3 git libpcre2-8-0)
	;;
*) die "DEVVM_TEST_GUEST must be 'busybox' or 'guix', not '$variant'" ;;
esac

self="$(readlink -f "${BASH_SOURCE[0]}")"
cache_root="${1:-${DEVVM_TEST_CACHE:-/var/cache/devvm-test}/$cache_name}"
for tool in apt-get apt-cache dpkg-deb cpio gzip ldd sha256sum flock; do
	command -v "$tool" >/dev/null || die "'$tool' is not installed; install it (Debian: apt-get install apt dpkg cpio gzip libc-bin coreutils util-linux) and retry"
done

kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
[[ -n "$kpkg" ]] || die "cannot resolve the kernel package behind linux-image-amd64; run 'apt-get update' and retry"
PKGS=("$kpkg" busybox-static "${SSHD_PKGS[@]}" "${LIB_PKGS[@]}" "${EXTRA_PKGS[@]}")
# Candidate versions from the local apt lists (one apt-cache call, no network).
declare -A cand=()
while read -r p v; do cand[$p]="$v"; done < <(apt-cache policy "${PKGS[@]}" 2>/dev/null |
	awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1)} /^  Candidate:/ {print p, $2}')
versions=""
for p in "${PKGS[@]}"; do
	v="${cand[$p]:-}"
	if [[ -z "$v" || "$v" == "(none)" ]]; then
		die "apt knows no installable version of '$p'; run 'apt-get update' (Debian 12 'main' must be in the sources) and retry"
	fi
	versions+="$p=$v"$'\n'
done
key="$({
	cat "$self"
	printf 'variant=%s sshd=%s\n%s' "$variant" "$sshd_kind" "$versions"
} | sha256sum | cut -c1-16)"
out="$cache_root/$key"

emit() { printf 'KERNEL=%s\nINITRD=%s\n' "$out/bzImage" "$out/initrd"; }

if [[ -f "$out/done" ]]; then
	touch "$out/done" 2>/dev/null || true # last use, for the clean-up below
	emit
	exit 0
fi

mkdir -p "$cache_root" 2>/dev/null || true
[[ -d "$cache_root" && -w "$cache_root" ]] ||
	die "cannot write the cache directory '$cache_root'; pass a writable CACHE_DIR or set DEVVM_TEST_CACHE"
exec 9>"$cache_root/.lock"
flock 9 # another test run may be building the same key
if [[ -f "$out/done" ]]; then
	emit
	exit 0
fi

work="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building the test guest $key in $cache_root (packages: $(printf '%s' "$versions" | tr '\n' ' '))"

mkdir -p "$work/debs" "$work/x"
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "${PKGS[@]}" >&2) ||
	die "apt-get download failed (see above); check the network to the Debian mirror or run 'apt-get update'"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/x" || die "cannot unpack $deb"; done

x="$work/x"
root="$work/root"
kver="${kpkg#linux-image-}"
[[ -f "$x/boot/vmlinuz-$kver" ]] || die "$kpkg did not contain boot/vmlinuz-$kver"
mdir="$x/lib/modules/$kver"

mkdir -p "$root"/{etc,proc,sys,dev,run,tmp,root,var/log,lib/modules}
chmod 700 "$root/root"
chmod 1777 "$root/tmp"

# copy_with_libs SRC[=DST]...: copy programs (or plugins) from the unpacked packages to DST (default: SRC) with the
# libraries ldd reports for them, at their Debian paths.
libpath="$x/lib/x86_64-linux-gnu:$x/usr/lib/x86_64-linux-gnu:$x/usr/libexec/sudo"
copy_with_libs() {
	local spec bin dst lib rel
	for spec in "$@"; do
		bin="${spec%%=*}"
		dst="${spec#*=}"
		mkdir -p "$root$(dirname "$dst")"
		cp "$x$bin" "$root$dst"
		if LD_LIBRARY_PATH="$libpath" ldd "$x$bin" | grep -q 'not found'; then
			die "ldd cannot resolve every library of $bin; add its package to this script's lists: $(LD_LIBRARY_PATH="$libpath" ldd "$x$bin" | grep 'not found' | tr -s '\n\t' '  ')"
		fi
		while read -r lib; do
			[[ "$lib" == "$x"/* ]] || die "ldd resolved '$lib' for $bin outside the unpacked packages; add its package to this script's lists"
			rel="${lib#"$x"}"
			mkdir -p "$root$(dirname "$rel")"
			cp -L "$lib" "$root$rel"
		done < <(LD_LIBRARY_PATH="$libpath" ldd "$x$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
	done
}
loader="$(find "$x" -name 'ld-linux-x86-64.so.2' -print -quit)"
[[ -n "$loader" ]] || die "libc6 did not contain ld-linux-x86-64.so.2"
mkdir -p "$root/lib64"
cp -L "$loader" "$root/lib64/ld-linux-x86-64.so.2"

# busybox_root: the busybox variant (the layout of the original test guest).
busybox_root() {
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/dropbear,etc/acpi/PWRF}
# busybox-static and its applets.
cp "$x/bin/busybox" "$root/bin/busybox"
"$root/bin/busybox" --list-full | while read -r applet; do
	[[ -e "$root/$applet" || -L "$root/$applet" ]] && continue
	ln -s /bin/busybox "$root/$applet"
done

# The SSH server, started in the foreground by /usr/sbin/devvm-sshd (init respawns it). Like devvm's templates
# (ClientAliveInterval), it drops a client that stopped answering keepalives (dropbear: after 3 of them).
if [[ "$sshd_kind" == openssh ]]; then
	copy_with_libs /usr/sbin/sshd /usr/bin/ssh-keygen
	mkdir -p "$root/etc/ssh"
	cat >"$root/etc/ssh/sshd_config" <<'EOF'
# OpenSSH in the devvm test guest: keys only; the login user is a uid-0 alias.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
ClientAliveInterval 5
ClientAliveCountMax 3
EOF
	cat >"$root/usr/sbin/devvm-sshd" <<'EOF'
#!/bin/sh
# A new ed25519 host key every boot (like dropbear -R), privilege separation as user sshd.
grep -q '^sshd:' /etc/passwd || echo 'sshd:x:65534:65534:sshd privsep:/run/sshd:/bin/false' >>/etc/passwd
mkdir -p /run/sshd
chmod 755 /run/sshd
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
exec /usr/sbin/sshd -D -e
EOF
else
	copy_with_libs /usr/sbin/dropbear
	printf '#!/bin/sh\nexec /usr/sbin/dropbear -R -F -E -K 5 -p 22\n' >"$root/usr/sbin/devvm-sshd"
fi
# bash-static as /bin/bash; git (every command used in the tests is a builtin of /usr/bin/git) and its libraries.
cp "$x/bin/bash-static" "$root/bin/bash"
copy_with_libs /usr/bin/git

cat >"$root/etc/shells" <<'EOF'
/bin/sh
/bin/ash
/bin/bash
EOF
cat >"$root/etc/acpid.conf" <<'EOF'
PWRF PWRF/00000080
EOF
cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# ACPI power button (QMP system_powerdown): clean power-off through init.
echo "devvm-guest: power button pressed, powering off" >/dev/console
exec /sbin/poweroff
EOF
cat >"$root/etc/rc.ready" <<'EOF'
#!/bin/sh
echo "devvm-guest: ready after $(cut -d' ' -f1 /proc/uptime) s of guest uptime"
EOF
cat >"$root/etc/rc.shutdown" <<'EOF'
#!/bin/sh
echo "devvm-guest: shutting down" >/dev/console
sync
umount -a -r -t 9p 2>/dev/null
exit 0
EOF
cat >"$root/usr/bin/sudo" <<'EOF'
#!/bin/sh
# sudo shim of the devvm test guest: the login user already is uid 0, so this only skips sudo's own options and
# runs the command (enough for `sudo poweroff`, `sudo -n true`, `sudo -u root CMD`).
while [ $# -gt 0 ]; do
	case "$1" in
	--) shift; break ;;
	-u|-g|-p|-C|-D|-h|-r|-t|-U) shift 2 ;;
	-*) shift ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: sudo COMMAND [ARG...]" >&2; exit 1; }
exec "$@"
EOF

cat >"$root/init" <<'EOF'
#!/bin/sh
# /init of the devvm test guest. Configuration comes from the kernel command line (tests/guest/README.md):
#   devvm.user=NAME  devvm.authkeys=BASE64  devvm.9p=TAG:/path[:ro],...  devvm.test=hang
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /run
say() { echo "devvm-guest: $*"; }

user=root authkeys="" shares="" testmode=""
# shellcheck disable=SC2013 # the command line is a list of words
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	devvm.user=*) user="${arg#devvm.user=}" ;;
	devvm.authkeys=*) authkeys="${arg#devvm.authkeys=}" ;;
	devvm.9p=*) shares="${arg#devvm.9p=}" ;;
	devvm.test=*) testmode="${arg#devvm.test=}" ;;
	esac
done

while read -r m; do
	insmod "/lib/modules/$m.ko" || say "could not load module $m"
done </etc/modules-order

# The login user is a uid-0 alias listed first (so whoami/id name it), home /root.
{
	[ "$user" = root ] || echo "$user:x:0:0:$user:/root:/bin/sh"
	echo "root:x:0:0:root:/root:/bin/sh"
} >/etc/passwd
{
	[ "$user" = root ] || echo "$user:*:19000:0:99999:7:::"
	echo "root:*:19000:0:99999:7:::"
} >/etc/shadow
chmod 600 /etc/shadow
printf 'root:x:0:\nwheel:x:10:%s\nusers:x:100:\ntty:x:5:\n' "$user" >/etc/group
echo devvm-guest >/etc/hostname
hostname devvm-guest
mkdir -p /root/.ssh
chmod 700 /root/.ssh
if [ -n "$authkeys" ]; then
	echo "$authkeys" | base64 -d >/root/.ssh/authorized_keys || say "devvm.authkeys is not valid base64"
	chmod 600 /root/.ssh/authorized_keys
fi

ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
# shellcheck disable=SC2015 # any failing step is reported
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 ||
	say "could not configure eth0"
echo "nameserver 10.0.2.3" >/etc/resolv.conf

# 9p shares; like Guix's mount-may-fail?, a failed mount is reported and boot goes on.
IFS_save="$IFS"
IFS=,
for spec in $shares; do
	IFS="$IFS_save"
	tag="${spec%%:*}"
	rest="${spec#*:}"
	opts="trans=virtio,version=9p2000.L,msize=104857600"
	case "$rest" in *:ro) rest="${rest%:ro}" opts="$opts,ro" ;; esac
	mkdir -p "$rest"
	if mount -t 9p -o "$opts" "$tag" "$rest"; then
		say "mounted 9p $tag on $rest"
	else
		say "could not mount 9p $tag on $rest"
	fi
	IFS=,
done
IFS="$IFS_save"

if [ "$testmode" = hang ]; then
	# Test hook: SSH works, but poweroff (a signal to PID 1) and the ACPI power button are ignored, so only
	# SIGTERM/SIGKILL to QEMU stops this VM.
	say "test mode hang: ignoring poweroff and the power button"
	trap '' TERM USR1 USR2 INT HUP QUIT
	/usr/sbin/devvm-sshd &
	/etc/rc.ready
	while :; do sleep 3600; done
fi

cat >/etc/inittab <<EOT
::respawn:/usr/sbin/devvm-sshd
::respawn:/bin/busybox acpid -f -c /etc/acpi -a /etc/acpid.conf -l /var/log/acpid.log
::sysinit:/etc/rc.ready
::shutdown:/etc/rc.shutdown
EOT
exec /bin/busybox init
EOF
chmod 755 "$root/init" "$root/usr/sbin/devvm-sshd" "$root/usr/bin/sudo" "$root/etc/rc.shutdown" "$root/etc/rc.ready" "$root/etc/acpi/PWRF/00000080"
}

# guix_root: the guix variant. It is laid out like a Guix System: programs live in store items, the system profile
# /run/current-system/profile links them, /bin and /usr/bin hold only sh and env (Guix's special files), and /init
# does at every boot what Guix's activation and Shepherd services do, in their order.
guix_root() {
	local S=/gnu/store bb bashp sudop sshp gitp shep prof sys a
	item() { printf '%s/%s-%s' "$S" "$(printf 'devvm-guest %s' "$1" | sha256sum | cut -c1-32)" "$1"; }
	bb="$(item busybox)" bashp="$(item bash)" sudop="$(item sudo)" sshp="$(item openssh)" gitp="$(item git)"
	shep="$(item shepherd)" prof="$(item profile)" sys="$(item system)"

	mkdir -p "$root$bb/bin"
	cp "$x/bin/busybox" "$root$bb/bin/busybox"
	for a in $("$x/bin/busybox" --list); do
		[[ "$a" == busybox ]] || ln -s busybox "$root$bb/bin/$a"
	done
	# The full bash of %base-packages (guix:gnu/system.scm:954): Debian's, built like Guix's with SSH_SOURCE_BASHRC
	# (guix:gnu/packages/bash.scm:146), so `ssh host CMD` sources ~/.bashrc.
	copy_with_libs "/bin/bash=$bashp/bin/bash"
	ln -s bash "$root$bashp/bin/sh"
	# sudo, and its sudoers plugin at Debian's compiled-in path. The store copy is not setuid; /init copies it to
	# /run/privileged/bin with the setuid bit, as Guix's activation does (%default-privileged-programs,
	# guix:gnu/system.scm:1285; guix:gnu/build/activation.scm:351-375).
	copy_with_libs "/usr/bin/sudo=$sudop/bin/sudo" /usr/libexec/sudo/sudoers.so \
		/lib/x86_64-linux-gnu/security/pam_unix.so /lib/x86_64-linux-gnu/security/pam_deny.so
	chmod 0755 "$root$sudop/bin/sudo"
	copy_with_libs "/usr/sbin/sshd=$sshp/sbin/sshd" "/usr/bin/ssh-keygen=$sshp/bin/ssh-keygen"
	# git: every command the tests run is a builtin.
	copy_with_libs "/usr/bin/git=$gitp/bin/git"

	# Shepherd installs only sbin/halt and sbin/reboot, and `shutdown` as a symlink to halt
	# (shep:Makefile.am:24, 183-186). This is a shell stand-in for them; see its comment.
	mkdir -p "$root$shep/sbin"
	sed "s|@BB@|$bb|g" >"$root$shep/sbin/halt" <<'EOF'
#!@BB@/bin/sh
# Stand-in for Shepherd's `halt` and `reboot` (and `shutdown`, a symlink to halt: shep:Makefile.am:183-186), as
# devvm meets them on a Guix 1.5.0 guest. Like the real halt (shep:modules/shepherd/scripts/halt.scm:36-47) it knows
# only -s/--socket FILE, plus the standard --version, --usage and --help, which have no short form
# (shep:modules/shepherd/args.scm:141-194); long options may be abbreviated. An unknown short option prints
# "Unknown option: `-X'." and exits 1 (args.scm:287-289), an unknown long one "Unknown option: `--X'." and
# "Try `--help'." (args.scm:253-260); a non-option argument prints the help and exits 0 (halt passes `not' as the
# argument handler, halt.scm:41; args.scm:133-135). The program name is "halt" whatever the link is called
# (halt.scm:33). Then it asks PID 1 to power off (halt.scm:53) and returns: Shepherd stops every service, sends
# SIGTERM then SIGKILL to leftover processes (guix:gnu/services/shepherd.scm:651-656), unmounts the file systems and
# powers off. Here PID 1 is busybox init, whose SIGUSR2 does the same: /etc/rc.shutdown, SIGTERM and SIGKILL to
# every process, power-off.
PATH=@BB@/bin
action=halt prog=halt
case "${0##*/}" in reboot) action=reboot prog=reboot ;; esac
help() {
	echo "$prog [OPTIONS...] "
	[ $action = halt ] && echo "Halt or power off the system." || echo "Reboot the system."
	echo
	echo "  -s, --socket=FILE          send commands to FILE"
	echo "      --version              display version information and exit"
	echo "      --usage                display short usage message and exit"
	echo "      --help                 display this help and exit"
	exit 0
}
while [ $# -gt 0 ]; do
	case "$1" in
	--) shift; [ $# -gt 0 ] && help; break ;;
	--s | --so | --soc | --sock | --socke | --socket) [ $# -gt 1 ] || { echo "Argument required by \`--socket'."; exit 1; }; shift ;;
	--s=* | --so=* | --soc=* | --sock=* | --socke=* | --socket=*) ;;
	--version) echo "$prog (GNU Shepherd) 1.0.9"; exit 0 ;;
	--usage) echo "$prog [-s FILE] [--socket=FILE] [--version] [--usage] [--help] [--] "; exit 0 ;;
	--h | --he | --hel | --help) help ;;
	--*) n="${1#--}"; echo "Unknown option: \`--${n%%=*}'."; echo "Try \`--help'."; exit 1 ;;
	-s) [ $# -gt 1 ] || { echo "Argument required by \`-s'."; exit 1; }; shift ;;
	-s*) ;;
	-?*) echo "Unknown option: \`-$(printf '%s' "$1" | cut -c2)'."; exit 1 ;;
	*) help ;;
	esac
	shift
done
# The real one connects to /var/run/shepherd/socket, which only root may use.
[ "$(id -u)" = 0 ] || { echo "$prog: error: connect: Permission denied" >&2; exit 1; }
if [ $action = halt ]; then kill -USR2 1; else kill -TERM 1; fi
EOF
	chmod 755 "$root$shep/sbin/halt"
	ln -s halt "$root$shep/sbin/shutdown"
	ln -s halt "$root$shep/sbin/reboot"

	# The system profile: what %base-packages put in /run/current-system/profile. No `poweroff`: no package of
	# %base-packages ships one (guix:gnu/system.scm:945-997); halt, reboot and shutdown are Shepherd's. Its sudo is
	# the non-setuid store copy ("must be owned by uid 0 and have the setuid bit set").
	mkdir -p "$root$prof/bin" "$root$prof/sbin" "$root$prof/etc"
	for a in $("$x/bin/busybox" --list); do
		case "$a" in busybox | poweroff | halt | reboot | shutdown | init | linuxrc | sh | bash) continue ;; esac
		ln -s "$bb/bin/$a" "$root$prof/bin/$a"
	done
	for a in bash sh; do ln -s "$bashp/bin/$a" "$root$prof/bin/$a"; done
	ln -s "$sudop/bin/sudo" "$root$prof/bin/sudo"
	ln -s "$gitp/bin/git" "$root$prof/bin/git"
	ln -s "$sshp/bin/ssh-keygen" "$root$prof/bin/ssh-keygen"
	for a in halt reboot shutdown; do ln -s "$shep/sbin/$a" "$root$prof/sbin/$a"; done
	# The profile's etc/profile sets its search paths (what `guix package --search-paths` prints).
	cat >"$root$prof/etc/profile" <<EOF
export PATH="\${GUIX_PROFILE:-$prof}/bin:\${GUIX_PROFILE:-$prof}/sbin\${PATH:+:}\$PATH"
EOF
	mkdir -p "$root$sys"
	ln -s "$prof" "$root$sys/profile"

	# Guix's special files: only /bin/sh (bash) and /usr/bin/env.
	mkdir -p "$root/bin" "$root/usr/bin"
	ln -s "$bashp/bin/sh" "$root/bin/sh"
	ln -s "$bb/bin/env" "$root/usr/bin/env"

	# /etc/profile, the login profile, in the shape of Guix's (guix:gnu/system.scm:1066-1120): it drops the PATH it
	# inherited, loads the system profile, the user's profiles, and puts the privileged programs first (1120).
	cat >"$root/etc/profile" <<'EOF'
# /etc/profile of the devvm test guest (the shape of Guix System's).
unset PATH
GUIX_PROFILE=/run/current-system/profile
. /run/current-system/profile/etc/profile
for p in "$HOME/.guix-profile" "$HOME/.guix-home/profile" "$HOME/.config/guix/current"; do
	if [ -f "$p/etc/profile" ]; then GUIX_PROFILE="$p"; . "$p/etc/profile"; else export PATH="$p/bin:$PATH"; fi
done
unset GUIX_PROFILE p
export PATH="/run/privileged/bin:$PATH"
umask 022
EOF
	# The account skeleton (guix:gnu/system/shadow.scm:148-197): .bashrc sources /etc/profile in a non-interactive
	# SSH session (shadow.scm:160-169); that is the only way `ssh host sudo …` finds the setuid sudo (notes 6c).
	mkdir -p "$root/etc/skel"
	cat >"$root/etc/skel/.bashrc" <<'EOF'
# ~/.bashrc from the devvm test guest's skeleton (the pattern of Guix's).
export SHELL
if [[ $- != *i* ]]; then
	# Non-interactive: `ssh host CMD` gets its PATH from /etc/profile.
	[[ -n "$SSH_CLIENT" ]] && source /etc/profile
	return 0
fi
PS1='\u@\h \w\$ '
EOF
	cat >"$root/etc/skel/.bash_profile" <<'EOF'
# ~/.bash_profile from the devvm test guest's skeleton (the pattern of Guix's).
if [ -f ~/.profile ]; then . ~/.profile; fi
if [ -f ~/.bashrc ]; then . ~/.bashrc; fi
EOF
	printf '%s\n' "$bashp/bin/bash" "$prof/bin/bash" "$prof/bin/sh" >"$root/etc/shells"
	printf '127.0.0.1 localhost devvm-guest\n::1 localhost devvm-guest\n' >"$root/etc/hosts"
	# devvm's templates: password-less sudo for wheel (templates/guix/default.scm; checked against
	# guix:gnu/system.scm:1301-1308); Guix installs it 0440 (guix:gnu/build/activation.scm:329).
	printf 'root ALL=(ALL) ALL\n%%wheel ALL=(ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers"
	chmod 0440 "$root/etc/sudoers"
	# Guix's base PAM services include one for sudo (guix:gnu/services/base.scm:1773), pam_unix based.
	mkdir -p "$root/etc/pam.d"
	printf 'auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n' >"$root/etc/pam.d/sudo"
	printf 'auth required pam_deny.so\naccount required pam_deny.so\nsession required pam_deny.so\n' >"$root/etc/pam.d/other"
	# sshd_config as Guix 1.5.0 generates it for devvm's templates (notes 5b; guix:gnu/services/ssh.scm:99-162,
	# 320-321), except: UsePAM no (the guest has no PAM stack for sshd), SetEnv PATH for Guix's compiled-in default
	# PATH (--with-default-path=/run/current-system/profile/bin, guix:gnu/packages/ssh.scm:252), and keepalives every
	# 5 s (3 missed) instead of the templates' 15 s (4 missed) so the share freeze test ends sooner.
	mkdir -p "$root/etc/ssh/authorized_keys.d"
	cat >"$root/etc/ssh/sshd_config" <<'EOF'
Port 22
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
AllowAgentForwarding yes
AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/authorized_keys.d/%u
UsePAM no
SetEnv PATH=/run/current-system/profile/bin
PidFile /run/sshd.pid
ClientAliveInterval 5
ClientAliveCountMax 3
EOF
	cat >"$root/etc/rc.ready" <<EOF
#!$bb/bin/sh
echo "devvm-guest: ready after \$($bb/bin/cut -d' ' -f1 /proc/uptime) s of guest uptime"
EOF
	cat >"$root/etc/rc.shutdown" <<EOF
#!$bb/bin/sh
# Run by busybox init on power-off, before it kills every process: the guest's shutdown path.
PATH=$bb/bin
echo "devvm-guest: shutting down" >/dev/console
sync
umount -a -r -t 9p 2>/dev/null
exit 0
EOF
	chmod 755 "$root/etc/rc.ready" "$root/etc/rc.shutdown"

	sed -e "s|@BB@|$bb|g" -e "s|@BASH@|$bashp|g" -e "s|@SUDO@|$sudop|g" -e "s|@SSH@|$sshp|g" -e "s|@SYS@|$sys|g" \
		>"$root/init" <<'EOF'
#!@BB@/bin/sh
# /init of the devvm test guest, guix variant. Configuration comes from the kernel command line (tests/guest/README.md):
#   devvm.user=NAME  devvm.uid=N  devvm.authkeys=BASE64  devvm.9p=TAG:/path[:ro],...  devvm.test=hang
# It does at every boot what a volatile Guix System does, in the same order: activation on a fresh root (accounts,
# privileged programs, host keys), then Shepherd's file-system services, then user-homes, then sshd.
export PATH=@BB@/bin
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /run
say() { echo "devvm-guest: $*"; }

user=dev uid=1000 authkeys="" shares="" testmode=""
# shellcheck disable=SC2013 # the command line is a list of words
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	devvm.user=*) user="${arg#devvm.user=}" ;;
	devvm.uid=*) uid="${arg#devvm.uid=}" ;;
	devvm.authkeys=*) authkeys="${arg#devvm.authkeys=}" ;;
	devvm.9p=*) shares="${arg#devvm.9p=}" ;;
	devvm.test=*) testmode="${arg#devvm.test=}" ;;
	esac
done

while read -r m; do
	insmod "/lib/modules/$m.ko" || say "could not load module $m"
done </etc/modules-order

# Activation. /run/current-system is the system; privileged programs are copied to /run/privileged/bin with their
# setuid bit (guix:gnu/build/activation.scm:347-375).
ln -s @SYS@ /run/current-system
mkdir -p /run/privileged/bin
cp @SUDO@/bin/sudo /run/privileged/bin/sudo
chown 0:0 /run/privileged/bin/sudo
chmod 4755 /run/privileged/bin/sudo
# Accounts: a real user in "users" and "wheel" (templates/guix/default.scm; guix:gnu/system/shadow.scm:115-116). Guix
# writes "!" as the password of an account without one (guix:gnu/build/accounts.scm:220-223) and its sshd uses PAM;
# this sshd runs without PAM, where OpenSSH refuses "!"-locked accounts, so "*" (no password either).
cat >/etc/passwd <<EOT
root:x:0:0:System administrator:/root:@BASH@/bin/bash
$user:x:$uid:100:$user:/home/$user:@BASH@/bin/bash
sshd:x:998:998:sshd privilege separation user:/var/empty:/run/current-system/profile/bin/nologin
nobody:x:65534:65534:Unprivileged:/nonexistent:/run/current-system/profile/bin/nologin
EOT
printf 'root:*:19000:0:99999:7:::\n%s:*:19000:0:99999:7:::\nsshd:!:19000::::::\nnobody:!:19000::::::\n' "$user" >/etc/shadow
chmod 600 /etc/shadow
printf 'root:x:0:\nwheel:x:10:%s\nusers:x:100:\ntty:x:5:\nsshd:x:998:\nnogroup:x:65534:\n' "$user" >/etc/group
echo devvm-guest >/etc/hostname
hostname devvm-guest
# The authorized keys live in /etc/ssh/authorized_keys.d/USER (guix:gnu/services/ssh.scm:212, 226-245), not in ~.
if [ -n "$authkeys" ]; then
	echo "$authkeys" | base64 -d >"/etc/ssh/authorized_keys.d/$user" || say "devvm.authkeys is not valid base64"
	chmod 444 "/etc/ssh/authorized_keys.d/$user"
fi
chmod 555 /etc/ssh/authorized_keys.d
# Host keys: `ssh-keygen -A` at every activation (guix:gnu/services/ssh.scm:218-223); the root is fresh each boot,
# so the keys are new each boot, as on a volatile Guix VM (notes 7).
@SSH@/bin/ssh-keygen -A >/dev/null || say "ssh-keygen -A failed"
mkdir -p /run/sshd /var/empty
chmod 755 /run/sshd

ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
# shellcheck disable=SC2015 # any failing step is reported
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 ||
	say "could not configure eth0"
echo "nameserver 10.0.2.3" >/etc/resolv.conf

# Shepherd's file-system services: the mount point is created (mkdir -p, as root) before the mount is tried
# (guix:gnu/services/base.scm:434-442); with mount-may-fail? a failure is reported and boot goes on
# (guix:gnu/build/file-systems.scm:1476-1478).
IFS_save="$IFS"
IFS=,
for spec in $shares; do
	IFS="$IFS_save"
	tag="${spec%%:*}"
	rest="${spec#*:}"
	opts="trans=virtio,version=9p2000.L,msize=104857600"
	case "$rest" in *:ro) rest="${rest%:ro}" opts="$opts,ro" ;; esac
	mkdir -p "$rest"
	if mount -t 9p -o "$opts" "$tag" "$rest"; then
		say "mounted 9p $tag on $rest"
	else
		say "could not mount 9p $tag on $rest"
	fi
	IFS=,
done
IFS="$IFS_save"

# user-homes runs after file-systems (guix:gnu/system/shadow.scm:479-483) and skips a home that exists
# (guix:gnu/build/activation.scm:264-265): a share mounted under /home/USER leaves it root-owned, without skeleton.
home="/home/$user"
if [ ! -d "$home" ]; then
	mkdir -p "$home"
	cp -a /etc/skel/. "$home/"
	chmod 700 "$home"
	chown -R "$uid:100" "$home"
else
	say "home $home exists already: not populated"
fi

if [ "$testmode" = hang ]; then
	# Test hook: SSH works, but halt (a signal to PID 1) and the ACPI power button are ignored, so only
	# SIGTERM/SIGKILL to QEMU stops this VM.
	say "test mode hang: ignoring halt and the power button"
	trap '' TERM USR1 USR2 INT HUP QUIT
	@SSH@/sbin/sshd -D -e &
	/etc/rc.ready
	while :; do sleep 3600; done
fi

# No handler for the ACPI power button: %base-services has neither elogind nor acpid (guix:gnu/services/base.scm:
# 4198-4259), so QMP system_powerdown is ignored, as on devvm's Guix guests.
cat >/etc/inittab <<EOT
::respawn:@SSH@/sbin/sshd -D -e
::sysinit:/etc/rc.ready
::shutdown:/etc/rc.shutdown
EOT
exec @BB@/bin/busybox init
EOF
	chmod 755 "$root/init"
}

# Kernel modules, flat, and the load order /init follows.
: >"$root/etc/modules-order"
for m in "${MODULES[@]}"; do
	dm="${m//_/-}" # some files use dashes (virtio-rng.ko)
	if grep -qE "/(${m}|${dm})\.ko(\.[a-z]+)?$" "$mdir/modules.builtin" 2>/dev/null; then
		log "module $m: built into $kver"
		continue
	fi
	f="$(find "$mdir" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$dm.ko" -o -name "$dm.ko.xz" \
		-o -name "$dm.ko.zst" \) -print -quit)"
	if [[ -z "$f" ]]; then
		log "module $m: absent from $kpkg (skipped)"
		continue
	fi
	case "$f" in
	*.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
	*.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
	*) cp "$f" "$root/lib/modules/$m.ko" ;;
	esac
	echo "$m" >>"$root/etc/modules-order"
	log "module $m: ${f#"$x"}"
done

if [[ "$variant" == guix ]]; then
	guix_root
else
	busybox_root
fi

mkdir -p "$work/out"
cp "$x/boot/vmlinuz-$kver" "$work/out/bzImage"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/out/initrd"
printf '%s' "$versions" >"$work/out/versions"
touch "$work/out/done"
rm -rf "$out"
mv "$work/out" "$out"
# Drop guests of older versions of this script or older packages that nothing used for a day (the stand-in keeps
# its own copies); a younger one may belong to another checkout's test run still going on.
for old in "$cache_root"/????????????????; do
	[[ "$old" != "$out" && -n "$(find "$old/done" -mmin +1440 2>/dev/null)" ]] && rm -rf "$old"
done
log "built $out (initrd $(du -k "$out/initrd" | cut -f1) KiB)"
emit
