#!/usr/bin/env bash
# tests/busy.sh CMD... - run CMD while a CPU hog keeps one of this
# machine's CPUs busy for the whole run, as another job on a shared CI
# runner would: no test may depend on a quiet machine.
#
# The hog is a shell busy loop pinned to the last CPU this process may use
# (LHPVM_HOG_CPU picks another), at normal priority. It is killed however
# CMD ends. Prints the hog's CPU and CMD's duration and status.
set -uo pipefail
cpus=$(taskset -pc $$ | sed 's/.*: //')
last=$(tr ',' '\n' <<<"$cpus" | tail -1 | sed 's/.*-//')
cpu=${LHPVM_HOG_CPU:-$last}
taskset -c "$cpu" sh -c 'while :; do :; done' &
hog=$!
trap 'kill $hog 2>/dev/null; wait $hog 2>/dev/null' EXIT INT TERM
echo "busy: a CPU hog (pid $hog) occupies CPU $cpu while: $*"
start=$(date +%s)
"$@"
rc=$?
echo "busy: $* ended with status $rc after $(( $(date +%s) - start )) s, CPU $cpu hogged throughout"
exit $rc
