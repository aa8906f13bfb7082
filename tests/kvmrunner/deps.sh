#!/usr/bin/env bash
# What the emulated kvm runner needs from Debian, installed when missing:
# QEMU (qemu-system-x86, without the GUI it recommends), a static busybox
# for the runner's userland, and apt's package lists, from which kvmrunner
# downloads (not installs) Debian's kernel package. Needs root to install.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v dpkg-deb >/dev/null || need+=(dpkg)
lists=$(apt-cache policy linux-image-amd64 2>/dev/null | grep -c 'Candidate: [0-9]' || true)
if [ ${#need[@]} -eq 0 ] && [ "$lists" -gt 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	# The fallback is a variable, not ${need[*]:-...}: an apostrophe inside
	# that expansion opens a quote for bash 5.2 and the file fails to parse.
	what="apt's package lists"
	if [ ${#need[@]} -gt 0 ]; then what="${need[*]}"; fi
	echo "the emulated kvm runner needs $what: run as root (apt-get), or install them" >&2
	exit 1
fi
apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
	echo "installing for the emulated kvm runner: ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
