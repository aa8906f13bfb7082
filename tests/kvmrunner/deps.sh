#!/usr/bin/env bash
# What the emulated kvm runner needs from Debian, installed when missing
# (tests/need.sh): QEMU (qemu-system-x86, without the GUI it recommends), a
# static busybox for the runner's userland, dpkg-deb, and apt's package
# lists, from which kvmrunner downloads (not installs) Debian's kernel
# package. Needs root to install.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/need.sh qemu-system-x86_64=qemu-system-x86 /bin/busybox=busybox-static dpkg-deb=dpkg
lists=$(apt-cache policy linux-image-amd64 2>/dev/null | grep -c 'Candidate: [0-9]' || true)
if [ "$lists" -gt 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "the emulated kvm runner needs apt's package lists (for Debian's kernel package): run apt-get update as root" >&2
	exit 1
fi
apt-get update -qq
