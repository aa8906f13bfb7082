#!/usr/bin/env bash
# kvmmode.sh - sourced by gotest.sh and fuzz.sh: where the kvm backend's
# tests run on this host. kvm_mode BIN prints "native" where /dev/kvm is
# textbook KVM (kvm_intel, kvm_amd), else "emulated" (the emulated runner,
# tests/kvmrunner; a kvm_pvm host is not textbook KVM), or LHPVM_KVM when
# it forces one (native, emulated, off).
kvm_mode() {
	local mode=${LHPVM_KVM:-auto} kvm
	if [ "$mode" != auto ]; then
		echo "$mode"
		return
	fi
	# "kvm  available  ... (kvm_amd)" or "kvm  not available  why"; anchored,
	# since " available " is inside "not available " too.
	kvm=$("$1" backends | grep '^kvm ' || true)
	if [[ $kvm =~ ^kvm\ +available\  && $kvm != *"(kvm_pvm)" ]]; then
		echo native
	else
		echo emulated
	fi
}

# host_required prints LHPVM_REQUIRE_BACKENDS as the host's own tests take
# it: without kvm where kvm does not run natively (the emulated runner
# requires it there instead).
host_required() {
	local req=${LHPVM_REQUIRE_BACKENDS:-}
	if [ "$(kvm_mode "$1")" != native ]; then
		req=$(tr ',' '\n' <<<"$req" | grep -vx kvm | paste -sd, -)
	fi
	echo "$req"
}
