#!/usr/bin/env bash
# fuzz.sh PKG:TARGET DURATION - run one fuzz target and say how much it did.
#
# Prints one line, "TARGET (PKG): N execs in DURATION, M new inputs", or on a
# failure the whole output and exit status 1. Minimisation of a new input is
# bounded (Go's default allows a minute per input, quadratic in its size, and
# a run can then spend its whole time minimising).
set -uo pipefail
spec=$1 time=$2
pkg=${spec%%:*} target=${spec##*:}
out=$("${GO:-go}" test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -fuzzminimizetime 2s "$pkg" 2>&1)
rc=$?
last=$(grep -E 'execs: [0-9]+' <<<"$out" | tail -1)
execs=$(sed -E 's/.*execs: ([0-9]+).*/\1/' <<<"$last")
new=$(sed -E 's/.*new interesting: ([0-9]+).*/\1/' <<<"$last")
if [ $rc -ne 0 ] || [ -z "$last" ]; then
	echo "$out"
	echo "$target ($pkg): FAILED" >&2
	exit 1
fi
echo "$target ($pkg): ${execs} execs in $time, ${new:-0} new inputs"
