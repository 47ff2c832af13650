#!/bin/bash
# build-guest.sh [CACHE_DIR] — build (or reuse) the tiny QEMU test guest of devvm's end-to-end tests.
#
# The guest is a Debian kernel plus a busybox + dropbear initramfs that boots to SSH under TCG in seconds and takes
# its configuration from the kernel command line (devvm.user=, devvm.authkeys=, devvm.9p=, devvm.test=; see
# tests/guest/README.md). Everything comes from Debian packages fetched with `apt-get download` at test time.
#
# Output: on success stdout holds exactly two lines, `KERNEL=<abs path>` and `INITRD=<abs path>`; progress goes to
# stderr. The result is cached in CACHE_DIR (default ${DEVVM_TEST_CACHE:-/var/cache/devvm-test}/guest) under a key
# that hashes this script and the candidate versions of the packages, so it is rebuilt only when either changes.
# Needs: apt-get/apt-cache with package lists (run `apt-get update` once), dpkg-deb, cpio, gzip, ldd, sha256sum.
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

# DEVVM_TEST_GUEST_SSHD=openssh swaps dropbear for OpenSSH's sshd, the SSH server of Guix guests (the share
# benchmark measures with it); that variant is cached apart, in guest-openssh.
sshd_kind="${DEVVM_TEST_GUEST_SSHD:-dropbear}"
case "$sshd_kind" in
dropbear)
	SSHD_PKGS=(dropbear-bin)
	cache_name=guest
	;;
openssh)
	# sshd, ssh-keygen and the libraries ldd reports for them (Debian 12).
	SSHD_PKGS=(openssh-server openssh-client libssl3 libaudit1 libcap-ng0 libcap2 libcom-err2 libgcrypt20 libgpg-error0
		libgssapi-krb5-2 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblz4-1 liblzma5 libnsl2 libpam0g
		libselinux1 libsystemd0 libtirpc3 libwrap0 libzstd1)
	cache_name=guest-openssh
	;;
*) die "DEVVM_TEST_GUEST_SSHD must be 'dropbear' or 'openssh', not '$sshd_kind'" ;;
esac

self="$(readlink -f "${BASH_SOURCE[0]}")"
cache_root="${1:-${DEVVM_TEST_CACHE:-/var/cache/devvm-test}/$cache_name}"
for tool in apt-get apt-cache dpkg-deb cpio gzip ldd sha256sum flock; do
	command -v "$tool" >/dev/null || die "'$tool' is not installed; install it (Debian: apt-get install apt dpkg cpio gzip libc-bin coreutils util-linux) and retry"
done

kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
[[ -n "$kpkg" ]] || die "cannot resolve the kernel package behind linux-image-amd64; run 'apt-get update' and retry"
# bash (for devvm's 9P-over-SSH mount script: /dev/tcp) and the real git with the libraries ldd reports.
EXTRA_PKGS=(bash-static git libpcre2-8-0)
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
	printf 'sshd=%s\n%s' "$sshd_kind" "$versions"
} | sha256sum | cut -c1-16)"
out="$cache_root/$key"

emit() { printf 'KERNEL=%s\nINITRD=%s\n' "$out/bzImage" "$out/initrd"; }

if [[ -f "$out/done" ]]; then
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

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,var/log,lib/modules,etc/dropbear,etc/acpi/PWRF}
chmod 700 "$root/root"
chmod 1777 "$root/tmp"

# busybox-static and its applets.
cp "$x/bin/busybox" "$root/bin/busybox"
"$root/bin/busybox" --list-full | while read -r applet; do
	[[ -e "$root/$applet" || -L "$root/$applet" ]] && continue
	ln -s /bin/busybox "$root/$applet"
done

# copy_with_libs PATH...: copy programs from the unpacked packages with the libraries ldd reports for them.
libpath="$x/lib/x86_64-linux-gnu:$x/usr/lib/x86_64-linux-gnu"
copy_with_libs() {
	local bin lib rel
	for bin in "$@"; do
		mkdir -p "$root$(dirname "$bin")"
		cp "$x$bin" "$root$bin"
		while read -r lib; do
			[[ "$lib" == "$x"/* ]] || die "ldd resolved '$lib' for $bin outside the unpacked packages; add its package to this script's lists"
			rel="${lib#"$x"}"
			mkdir -p "$root$(dirname "$rel")"
			cp -L "$lib" "$root$rel"
		done < <(LD_LIBRARY_PATH="$libpath" ldd "$x$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
	done
}
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
loader="$(find "$x" -name 'ld-linux-x86-64.so.2' -print -quit)"
[[ -n "$loader" ]] || die "libc6 did not contain ld-linux-x86-64.so.2"
mkdir -p "$root/lib64"
cp -L "$loader" "$root/lib64/ld-linux-x86-64.so.2"

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

mkdir -p "$work/out"
cp "$x/boot/vmlinuz-$kver" "$work/out/bzImage"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/out/initrd"
printf '%s' "$versions" >"$work/out/versions"
touch "$work/out/done"
rm -rf "$out"
mv "$work/out" "$out"
# Drop guests built by older versions of this script or older packages (the stand-in keeps its own copies).
for old in "$cache_root"/????????????????; do
	[[ "$old" != "$out" && -f "$old/done" ]] && rm -rf "$old"
done
log "built $out (initrd $(du -k "$out/initrd" | cut -f1) KiB)"
emit
