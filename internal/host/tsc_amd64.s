#include "textflag.h"

// func rdtsc() uint64
// LFENCE first, as the guest's rdtsc_ordered does: the read does not move
// before earlier loads.
TEXT ·rdtsc(SB),NOSPLIT,$0-8
	LFENCE
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	MOVQ	AX, ret+0(FP)
	RET
