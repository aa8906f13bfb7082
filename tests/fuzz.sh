#!/usr/bin/env bash
# fuzz.sh PKG:TARGET DURATION - run one fuzz target and say how much it did.
#
# Prints one line, "TARGET (PKG): N execs in DURATION, M new inputs", or on a
# failure the whole output and exit status 1. The duration includes Go's
# baseline run of the corpus before fuzzing starts. Minimisation of a new input is
# bounded (Go's default allows a minute per input, quadratic in its size, and
# a run can then spend its whole time minimising).
#
# Go before 1.27 can fail a duration-bounded fuzz run with a bare "context
# deadline exceeded" as -fuzztime expires (its coordinator's own deadline
# racing a worker: golang/go#75804), with no failing input. That exact
# signature, with no new input written to testdata/fuzz/TARGET, is reported
# as what it is and does not fail; any other failure, or a written input,
# does.
set -uo pipefail
spec=$1 time=$2
# The targets that run whole VMs (FuzzGuestCode) run on this host's own
# backends: kvm is required of them only where it runs natively (elsewhere
# the emulated runner's test passes require it).
# shellcheck source=tests/kvmmode.sh
source "$(dirname "$0")/kvmmode.sh"
LHPVM_REQUIRE_BACKENDS=$(host_required "${BIN:-bin/lhpvm}")
export LHPVM_REQUIRE_BACKENDS
pkg=${spec%%:*} target=${spec##*:}
corpus="$pkg/testdata/fuzz/$target"
before=$(ls "$corpus" 2>/dev/null | sort)
out=$("${GO:-go}" test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -fuzzminimizetime 2s "$pkg" 2>&1)
rc=$?
after=$(ls "$corpus" 2>/dev/null | sort)
last=$(grep -E 'execs: [0-9]+' <<<"$out" | tail -1)
execs=$(sed -E 's/.*execs: ([0-9]+).*/\1/' <<<"$last")
new=$(sed -E 's/.*new interesting: ([0-9]+).*/\1/' <<<"$last")
if [ $rc -ne 0 ] && [ -n "$last" ] && [ "$before" = "$after" ] &&
	grep -A1 -E "^--- FAIL: ${target} " <<<"$out" | tail -1 | grep -qx '[[:space:]]*context deadline exceeded'; then
	echo "$target ($pkg): ${execs} execs in $time, ${new:-0} new inputs (Go's fuzz coordinator tripped on its own -fuzztime deadline, golang/go#75804: no failing input)"
	exit 0
fi
# A passing run whose -fuzztime went on the baseline (every seed and cached
# corpus entry run once, before fuzzing starts: FuzzGuestCode's are whole
# VMs) prints no exec count; that is not a failure.
baseline=$(grep -oE 'gathering baseline coverage: [0-9]+/[0-9]+' <<<"$out" | tail -1 | sed -E 's/.*: //')
if [ $rc -eq 0 ] && [ -z "$last" ] && [ -n "$baseline" ] && grep -qx 'PASS' <<<"$out"; then
	echo "$target ($pkg): 0 execs in $time: Go's baseline run of the corpus took the whole time (it last printed $baseline entries done), no failure"
	exit 0
fi
if [ $rc -ne 0 ] || [ -z "$last" ]; then
	echo "$out"
	echo "$target ($pkg): FAILED" >&2
	exit 1
fi
echo "$target ($pkg): ${execs} execs in $time, ${new:-0} new inputs"
