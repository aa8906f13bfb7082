package ptrace

import (
	"bytes"

	"github.com/lhpvm/lhpvm/internal/hv"
	"golang.org/x/sys/unix"
)

// decoder decodes stops with a small cache of doorbell instructions: a guest
// rings the doorbell from a few dozen sites, and x86asm.Decode costs about a
// microsecond and two allocations where a cache hit costs tens of
// nanoseconds and none. An entry is used only if the bytes at RIP are still
// the ones decoded, so self-modifying code is decoded afresh.
type decoder struct {
	cache [64]cachedAccess
}

type cachedAccess struct {
	rip  uint64
	code [maxInsnLen]byte
	a    access
}

// stop is decodeStop with the doorbell decodes cached.
func (d *decoder) stop(si sigInfo, r *unix.PtraceRegs, code []byte) (hv.Event, access) {
	if si.Signo == int32(unix.SIGSEGV) && si.Code == segvMapErr && inDoorbell(si.Addr) && code != nil {
		e := &d.cache[r.Rip%uint64(len(d.cache))]
		if e.a.insnLen > 0 && e.rip == r.Rip && e.a.insnLen <= len(code) && bytes.Equal(e.code[:e.a.insnLen], code[:e.a.insnLen]) {
			return doorbellEvent(si.Addr, r, e.a), e.a
		}
		ev, a := decodeStop(si, r, code)
		if a.insnLen > 0 {
			e.rip, e.a = r.Rip, a
			copy(e.code[:], code[:a.insnLen])
		}
		return ev, a
	}
	return decodeStop(si, r, code)
}
