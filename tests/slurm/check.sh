#!/usr/bin/env bash
# make test-slurm: a real single-node Slurm on this machine (munge,
# slurmctld and slurmd from Debian, installed when missing, started here on
# localhost with a configuration of our own, and stopped at the end), runs
# a 4-task job array of a short sweep through deploy/slurm/run.sh, and
# checks that the merged results hold exactly the cells of the unsharded
# plan, each ok. Needs root (the daemons, and apt-get when something is
# missing). Not part of make test.
#
#   tests/slurm/check.sh BIN   (BIN: the lhpvm binary, e.g. bin/lhpvm)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(readlink -f "${1:?usage: check.sh BIN}")
[ "$(id -u)" = 0 ] || { echo "test-slurm: needs root (it starts munged, slurmctld and slurmd)" >&2; exit 1; }
tests/need.sh munged=munge slurmctld=slurmctld slurmd=slurmd sbatch=slurm-client

work=$(mktemp -d /tmp/lhpvm-slurm.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# munge: its own key and socket, so a host's munged (if any) is left alone.
mkdir -p "$work/munge"
chown munge: "$work/munge" 2>/dev/null || true
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chown munge: "$work/munge/munge.key" 2>/dev/null || true
chmod 400 "$work/munge/munge.key"
sock=$work/munge/munge.socket
runuser -u munge -- munged --key-file="$work/munge/munge.key" --socket="$sock" \
	--pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/seed"
pids+=("$(cat "$work/munge/munged.pid")")

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$work/slurm.conf" <<CONF
ClusterName=lhpvm
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$sock
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=lhpvm Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$work/state" "$work/spool"
export SLURM_CONF=$work/slurm.conf
slurmctld -D -f "$SLURM_CONF" > "$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" > "$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
	if sinfo -h -N -o '%T' 2>/dev/null | grep -qx idle; then break; fi
	sleep 0.2
done
sinfo -N || true
sinfo -h -N -o '%T' | grep -qx idle || { echo "test-slurm: the node never came up; logs in $work" >&2; tail -20 "$work"/slurm*.log >&2; exit 1; }

# A short sweep, sharded four ways, and the same plan unsharded.
args=(--locks "ticket,tas" --policies "rr,pv" --sizes "2,4" --duration 50ms --repeat 1 --seed 7)
LHPVM=$bin deploy/slurm/run.sh 4 "$work/out" "${args[@]}"
cat "$work/out/merged.txt"
"$bin" experiment "${args[@]}" --quiet --out "$work/all" > /dev/null

cells() { cut -d, -f1-5 "$1/cells.csv"; }
if ! diff <(cells "$work/all") <(cells "$work/out/merged"); then
	echo "test-slurm: the merged cells differ from the unsharded plan's" >&2
	exit 1
fi
if cut -d, -f8 "$work/out/merged/cells.csv" | tail -n +2 | grep -vqx true; then
	echo "test-slurm: a merged cell is not ok" >&2
	exit 1
fi
echo "test-slurm: 4 Slurm tasks measured $(($(wc -l < "$work/out/merged/cells.csv") - 1)) cells; merged, they are the unsharded plan's, each ok"
rm -rf "$work"
