#!/usr/bin/env bash
# tests/fresh/check.sh (make check-fresh): the README's set-up paths, run
# where nothing was installed before. It builds a minimal Debian 12 root with
# mmdebstrap from Debian's packages (cached as a tarball, so a second run
# only unpacks it), holding only what the README says a fresh machine has -
# gcc, binutils, make and git, plus the host's Go toolchain bound in
# read-only (Debian 12's Go is too old) - and, in a fresh copy of it, runs
# from a clean clone of HEAD:
#   make run                              build everything, the default experiment
#   make check-scripts, make model        the shellcheck and spin installers
#   tests/need.sh chromium tsan           the viewer's and the lock harness's installers
#   make -C guest/hosttest check          the host lock harness (ThreadSanitizer too)
#   kvmrunner exec -- lhpvm backends      the emulated kvm runner's installers and
#                                         first stage, up to "/dev/kvm ready"
#   go test -run ... ./tests              a short end-to-end subset on ptrace
# What it proves: every installer and first-time download the tests rely on
# works on a machine that lacks all of it. What it does not: the full make
# test, which runs on the host (CI runs both). Needs root (chroot, mount).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
cache=${LHPVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lhpvm}
base=$cache/fresh-bookworm.tar
goroot=$(go env GOROOT)

if [ "$(id -u)" != 0 ]; then
	echo "check-fresh needs root (it builds and enters a chroot)" >&2
	exit 1
fi
tests/need.sh mmdebstrap=mmdebstrap
mkdir -p "$cache"
if [ ! -s "$base" ]; then
	# The host's own apt sources, so the root sees the same Debian archive.
	sources=()
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
		if [ -s "$f" ]; then sources+=("$f"); fi
	done
	echo "check-fresh: building a minimal Debian 12 root (once; cached in $base)"
	mmdebstrap --quiet --format=tar --variant=minbase --include=gcc,libc6-dev,binutils,make,git,ca-certificates \
		bookworm "$base.tmp" "${sources[@]}" </dev/null
	mv "$base.tmp" "$base"
fi

root=$(mktemp -d /var/tmp/lhpvm-fresh.XXXXXX)
mounts=()
cleanup() {
	local i
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
	rm -rf --one-file-system "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
bind() { # bind SRC DST [ro]
	mkdir -p "$2"
	mount --bind "$1" "$2"
	mounts+=("$2")
	if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
bind /sys "$root/sys"
bind /dev "$root/dev"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null && mounts+=("$root/dev/pts") || true
mount -t tmpfs tmpfs "$root/dev/shm" && mounts+=("$root/dev/shm")
bind "$goroot" "$root/usr/local/go" ro
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# The machine's own settings, which a fresh machine of ours has too: its
# trust store (the CAs its network needs) and apt's settings.
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/apt/apt.conf.d/* "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
git clone -q "$repo" "$root/root/lhpvm"

# What the fresh machine has before anything runs.
chroot "$root" /bin/bash -c 'for c in qemu-system-x86_64 busybox spin chromium shellcheck; do
	if command -v $c >/dev/null; then echo "check-fresh: the root already has $c" >&2; exit 1; fi; done'

step() { # step NAME CMD: one step in the root, timed
	local name=$1 t=$SECONDS
	shift
	echo "== check-fresh: $name"
	chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		GOFLAGS=-modcacherw TERM=dumb LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt /bin/bash -euo pipefail -c "cd /root/lhpvm && $*"
	echo "== check-fresh: $name: ok in $((SECONDS - t)) s"
}
step "make run" make run
step "make check-scripts" make check-scripts
step "make model" make model
step "installers of the viewer and the lock harness" tests/need.sh chromium=chromium tsan=libtsan2
step "host lock harness" make -C guest/hosttest check
step "emulated kvm runner, first stage" "tests/kvmrunner/deps.sh && go run ./tests/kvmrunner -timeout 15m exec -- /lhpvm/artifacts/lhpvm backends"
step "end-to-end subset on ptrace" "LHPVM_REQUIRE_BACKENDS=ptrace go test -count=1 -skip '/kvm\$' -run '^(TestHello|TestCLIRun|TestBackendChoice)\$' ./tests"
echo "check-fresh: passed"
