#!/bin/busybox sh
# PID 1 of the emulated kvm runner. The host (kvmrunner) wrote
# /lhpvm/runner.env: MODULES (the .ko files to load, dependencies first),
# KVM_AMD_PARAMS, and SHELL_MODE; and /lhpvm/job.sh, the job to run.
#
# The kernel's console is ttyS0. The job's output goes to ttyS1, a separate
# line, raw, so that the host gets it byte for byte; its last line is
# "lhpvm-runner: exit N" with the job's status. PID 1 must not exit (the
# kernel would panic), so it always ends with poweroff.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o size=2g tmpfs /tmp
. /lhpvm/runner.env

out=/dev/ttyS1
if [ "$SHELL_MODE" = 1 ]; then
	out=/dev/ttyS0
else
	stty -F $out raw -echo
fi
say() { echo "lhpvm-runner: $*" >$out; }
die() {
	say "$*"
	say "exit 125"
	sync
	poweroff -f
}

for m in $MODULES; do
	case $m in
	*/kvm-amd.ko) insmod "$m" $KVM_AMD_PARAMS || die "insmod $m $KVM_AMD_PARAMS failed" ;;
	*) insmod "$m" || die "insmod $m failed" ;;
	esac
done
[ -c /dev/kvm ] || die "no /dev/kvm after loading kvm_amd (does the emulated CPU have svm?)"
grep -qw svm /proc/cpuinfo || die "the emulated CPU has no svm flag"
say "$(uname -r), $(nproc) CPUs, kvm_amd $KVM_AMD_PARAMS: /dev/kvm ready"

# A heartbeat on the console: the host knows the runner's userspace still
# gets CPU time, and tells a stuck runner from a slow test.
(while :; do
	echo "lhpvm-runner: alive $(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0
	sleep 5
done) &

export HOME=/tmp TMPDIR=/tmp USER=root
cd /lhpvm/tests
if [ "$SHELL_MODE" = 1 ]; then
	echo "lhpvm-runner: a shell in the runner; the job would have been:"
	cat /lhpvm/job.sh
	echo "lhpvm-runner: (sh /lhpvm/job.sh runs it; exit or Ctrl-D powers off)"
	setsid cttyhack sh -l
	rc=$?
else
	sh /lhpvm/job.sh >$out 2>&1 </dev/null
	rc=$?
fi
say "exit $rc"
sync
poweroff -f
