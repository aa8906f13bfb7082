#!/usr/bin/env bash
# check.sh - model-check guest/model/pvqspin.pml with SPIN: every knob
# combination (steal x pending x kick) exhaustively, for 2 vCPUs taking the
# lock twice each and 3 vCPUs taking it once; then two mutations (a lost
# wakeup each) that must be caught, so the model is known not to be vacuous.
# Needs spin (Debian package spin) and gcc. Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")"
command -v spin >/dev/null || { echo "check.sh: needs the SPIN model checker (apt-get install spin)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp pvqspin.pml "$work/"
cd "$work"

# verify DEFINES...: prints the outcome, returns 0 if SPIN found no error.
verify() {
	spin -a "$@" pvqspin.pml >/dev/null
	gcc -O0 -DSAFETY -DMEMLIM=2048 -w -o pan pan.c
	./pan -m2000000 -w20 >out 2>&1 || true
	if grep -q "error: max search depth too small\|out of memory\|command terminated" out; then
		echo "incomplete search: $*"; sed -n 1,20p out; return 2
	fi
	local errs states
	errs=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' out)
	states=$(sed -n 's/^ *\([0-9e.+]*\) states, stored.*/\1/p' out)
	echo "$* : $states states, $errs errors"
	[ "$errs" = 0 ]
}

fail=0
names_steal=(hybrid off once)
for st in 0 1 2; do
	for pe in 1 0; do
		for k in 0 1; do
			for size in "-DN=2 -DITERS=2" "-DN=3 -DITERS=1"; do
				printf 'steal=%s pending=%s kick=%s ' "${names_steal[$st]}" "$([ $pe = 1 ] && echo on || echo off)" "$([ $k = 0 ] && echo deferred || echo immediate)"
				verify $size -DSTEAL=$st -DPENDING=$pe -DKICK=$k || fail=1
			done
		done
	done
done
for bug in BUG_NO_RECHECK BUG_PLAIN_UNLOCK; do
	printf 'mutation %s (must be caught) ' "$bug"
	if verify -DN=2 -DITERS=2 -D$bug; then
		echo "NOT CAUGHT: the model misses a lost wakeup"; fail=1
	else
		echo "  caught: $(grep -m1 -E 'assertion violated|invalid end state' out || true)"
	fi
done
if [ $fail = 0 ]; then echo "model: all runs as expected"; else echo "model: FAILED"; fi
exit $fail
