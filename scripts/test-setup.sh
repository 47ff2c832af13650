#!/usr/bin/env bash
# Installs what devvm's tests need on a Debian host (root, or sudo):
# QEMU for the end-to-end tier, mmdebstrap for the real-Guix tier (it builds a
# Debian sid chroot with guix 1.5.0), OpenSSH for the remote MicroVM tests and
# the OpenSSH interop tests, busybox/cpio for the tiny test guest, git/jq for the
# MicroVM stand-ins, nix-bin to parse the shipped flake template, python3 for the
# share benchmark.
# Idempotent: installs only what is missing.
set -euo pipefail
pkgs=(qemu-system-x86 qemu-utils mmdebstrap openssh-server openssh-client busybox-static cpio socat ca-certificates git jq nix-bin python3)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { echo "test-setup: need root to install: ${missing[*]}" >&2; exit 1; }
		sudo=sudo
	fi
	echo "test-setup: installing ${missing[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The guest builder downloads .debs with apt-get download: make sure the lists exist.
if ! apt-cache policy linux-image-amd64 2>/dev/null | grep -q Candidate: || apt-cache policy linux-image-amd64 | grep -q "Candidate: (none)"; then
	${sudo:-} apt-get update -qq
fi
echo "test-setup: ok" >&2
