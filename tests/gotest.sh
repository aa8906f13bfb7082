#!/usr/bin/env bash
# tests/gotest.sh - make test's Go part: every package's tests, and the
# end-to-end tests on every backend, then all of it again under the race
# detector. Each pass goes through internal/testsummary (skips and their
# reasons last); the JSON of each is kept in bin/test-*.json, and a last
# comparison says, per backend, where it ran and how many subtests ran.
#
# kvm runs natively where /dev/kvm works and is textbook KVM (kvm_intel,
# kvm_amd), else in the emulated runner (tests/kvmrunner: real kvm_amd
# inside QEMU TCG). A kvm_pvm host (PVM, a paravirtual KVM nested in a KVM
# guest, as our machines sometimes have) is not textbook KVM
# (docs/kvm.md), so there too the runner is what make test uses.
# LHPVM_KVM=native or LHPVM_KVM=emulated forces one; LHPVM_KVM=off skips
# kvm (a failure when LHPVM_REQUIRE_BACKENDS names it). LHPVM_QUICK=1 leaves
# out the -race passes.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin/lhpvm}
require=${LHPVM_REQUIRE_BACKENDS:-}
# The switches that make CI strict must not be mistyped into nothing.
known=$("$BIN" backends --json | grep -o '"name": *"[a-z]*"' | grep -o '"[a-z]*"$' | tr -d '"' | paste -sd' ' -)
for b in ${require//,/ }; do
	if [[ " $known " != *" $b "* ]]; then
		echo "LHPVM_REQUIRE_BACKENDS names '$b', which is not a backend (have: $known)" >&2
		exit 2
	fi
done
case ${LHPVM_REQUIRE_KVM:-0} in
1 | t | T | true | TRUE | True) require_kvm=1 ;;
0 | f | F | false | FALSE | False) require_kvm=0 ;;
*)
	echo "LHPVM_REQUIRE_KVM=$LHPVM_REQUIRE_KVM: want a boolean (1 or 0, true or false)" >&2
	exit 2 ;;
esac
requires_kvm() { [[ ",$require," == *,kvm,* || $require_kvm == 1 ]]; }

# shellcheck source=tests/kvmmode.sh
source tests/kvmmode.sh
mode=$(kvm_mode "$BIN")
kvm=$("$BIN" backends | grep '^kvm ' || true)
case $mode in
native) kvm_where="natively $(grep -o '([a-z_]*)$' <<<"$kvm" || true)" ;;
emulated) kvm_where="in the emulated runner (QEMU TCG, SVM)" ;;
off)
	if requires_kvm; then
		echo "kvm: LHPVM_KVM=off, but LHPVM_REQUIRE_BACKENDS requires kvm" >&2
		exit 1
	fi
	kvm_where="" ;;
*)
	echo "LHPVM_KVM=$mode: want auto, native, emulated or off" >&2
	exit 2 ;;
esac
if [ -n "$kvm_where" ]; then
	echo "kvm: runs $kvm_where"
else
	echo "kvm: skipped: LHPVM_KVM=off"
fi
if [ "$mode" = emulated ]; then
	tests/kvmrunner/deps.sh
fi

# On the host: everything, with kvm's subtests unless they run elsewhere.
hostreq=$(host_required "$BIN") skip=()
if [ "$mode" != native ]; then
	skip=(-skip '/^kvm$')
	export LHPVM_REQUIRE_KVM=0
fi
mkdir -p bin
pass() { # pass NAME GO-TEST-ARGS...: one host pass, summarized
	local name=$1
	shift
	echo "go test $* ./...:"
	LHPVM_REQUIRE_BACKENDS=$hostreq "$GO" test -json -count=1 -timeout 15m "${skip[@]}" "$@" ./... |
		tee "bin/test-$name.json" | "$GO" run ./internal/testsummary
}
runner() { # runner NAME KVMRUNNER-ARGS...: one pass in the emulated runner
	local name=$1
	shift
	echo "kvm in the emulated runner: kvmrunner $* test:"
	"$GO" run ./tests/kvmrunner "$@" test | tee "bin/test-$name.json" | "$GO" run ./internal/testsummary
}

files=(bin/test-host.json) backends="ptrace=natively"
pass host
if [ "$mode" = emulated ]; then
	runner kvm
	files+=(bin/test-kvm.json)
fi
if [ "${LHPVM_QUICK:-}" != 1 ]; then
	pass host-race -race
	if [ "$mode" = emulated ]; then
		runner kvm-race -race
	fi
fi

echo "per backend (the passes without -race):"
if [ "$mode" != off ]; then
	backends="$backends;kvm=$kvm_where"
fi
"$GO" run ./internal/testsummary -backends "$backends" "${files[@]}"
