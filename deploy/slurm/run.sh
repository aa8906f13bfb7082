#!/usr/bin/env bash
# run.sh N OUT EXPERIMENT-ARGS...: an lhpvm experiment spread over N Slurm
# tasks, then merged. Submits a job array of N shards
# (lhpvm-shard.sbatch) and a merge job that runs when every shard
# succeeded, and waits for the merge; OUT/merged then holds the files one
# unsharded experiment writes, and OUT/merged.txt its table.
#
#   deploy/slurm/run.sh 4 results --preset ... | --locks ticket,pticket --policies rr --sizes 4 --repeat 10
#
# LHPVM names the lhpvm binary every node runs (default: lhpvm on PATH).
# Give --seed to draw every shard's runs from one experiment seed.
set -euo pipefail
n=${1:?usage: run.sh N OUT EXPERIMENT-ARGS...}
out=${2:?usage: run.sh N OUT EXPERIMENT-ARGS...}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
lhpvm=${LHPVM:-lhpvm}
mkdir -p "$out"
out=$(cd "$out" && pwd)
array=$(sbatch --parsable --array="1-$n" --chdir="$out" --export=ALL,LHPVM="$lhpvm" \
	"$here/lhpvm-shard.sbatch" "$out" "$@")
echo "shards: job array $array (1-$n) into $out/shard-*"
shards=()
for i in $(seq 1 "$n"); do
	shards+=("$out/shard-$i")
done
merge=$(sbatch --wait --parsable --job-name=lhpvm-merge --dependency="afterok:$array" --chdir="$out" \
	--output="$out/merged.txt" --wrap "$(printf '%q ' "$lhpvm" merge --out "$out/merged" "${shards[@]}")")
echo "merged by job $merge: $out/merged (table: $out/merged.txt)"
