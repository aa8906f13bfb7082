#include "textflag.h"

// func pauseLoop(n uint64)
TEXT ·pauseLoop(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
	TESTQ CX, CX
	JZ done
loop:
	PAUSE
	DECQ CX
	JNZ loop
done:
	RET
