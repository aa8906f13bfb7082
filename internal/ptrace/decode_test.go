package ptrace

import (
	"testing"

	"github.com/lhpvm/lhpvm/hypercall"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	db  = uint64(hypercall.DoorbellGPA)
	rip = uint64(0x102000)
)

// regs is a register state with recognisable values.
func regs() unix.PtraceRegs {
	return unix.PtraceRegs{Rax: 4, Rcx: 0x11, Rdx: db, Rbx: 0x2233, Rsi: 0x5566, R8: 3, R15: 0xf15,
		Rip: rip, Rsp: 0x3ff7f00, Eflags: 0x202, Cs: 0x33, Ss: 0x2b}
}

func segv(addr uint64) sigInfo {
	return sigInfo{Signo: int32(unix.SIGSEGV), Code: segvMapErr, Addr: addr}
}

// TestDoorbellStores: every encoding of an 8-byte store at the doorbell is
// a hypercall with the stored value; narrower stores and stores elsewhere in
// the doorbell page are bad accesses. RIP advances by the instruction length.
func TestDoorbellStores(t *testing.T) {
	for _, tt := range []struct {
		name string
		code []byte
		addr uint64
		want hv.Event
	}{
		{"movq $imm32,(%rax)", []byte{0x48, 0xc7, 0x00, 0x05, 0, 0, 0}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 5, Addr: db, Len: 8, Write: true}},
		{"movq $-1,(%rax): sign-extended", []byte{0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: ^uint64(0), Addr: db, Len: 8, Write: true}},
		{"mov %rax,(%rdx)", []byte{0x48, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 4, Addr: db, Len: 8, Write: true}},
		{"mov %r8,(%rdx)", []byte{0x4c, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 3, Addr: db, Len: 8, Write: true}},
		{"mov %r15,(%rdx) with a REX.B base", []byte{0x4d, 0x89, 0x3f}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 0xf15, Addr: db, Len: 8, Write: true}},
		{"movabs %rax,0xd0000000", []byte{0x48, 0xa3, 0, 0, 0, 0xd0, 0, 0, 0, 0}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 4, Addr: db, Len: 8, Write: true}},
		{"mov %rbx,0x10(%rdx,%rcx,4)", []byte{0x48, 0x89, 0x5c, 0x8a, 0x10}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 0x2233, Addr: db, Len: 8, Write: true}},
		{"mov %rax,%fs:(%rdx)", []byte{0x64, 0x48, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 4, Addr: db, Len: 8, Write: true}},
		{"movnti %r8,(%rdx)", []byte{0x4c, 0x0f, 0xc3, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 3, Addr: db, Len: 8, Write: true}},
		{"data16 REX.W mov: still 8 bytes", []byte{0x66, 0x48, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 4, Addr: db, Len: 8, Write: true}},
		// A REX prefix not right before the opcode is ignored by the CPU
		// (x86asm refuses it): only the last one counts.
		{"REX.B, then REX.W mov %rax,(%rdx)", []byte{0x41, 0x48, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 4, Addr: db, Len: 8, Write: true}},
		{"three REX, then REX.W mov %rax,(%rdx)", []byte{0x40, 0x4f, 0x41, 0x48, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventHypercall, Nr: 4, Addr: db, Len: 8, Write: true}},
		{"REX.W before data16: mov %ax,(%rdx)", []byte{0x48, 0x66, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 2, Write: true}},
		{"REX.W before %fs: mov %eax,%fs:(%rdx)", []byte{0x48, 0x64, 0x89, 0x02}, db,
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 4, Write: true}},
		{"mov %eax,(%rdx)", []byte{0x89, 0x02}, db, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 4, Write: true}},
		{"movl $0,(%rdx)", []byte{0xc7, 0x02, 0, 0, 0, 0}, db, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 4, Write: true}},
		{"mov %ax,(%rdx)", []byte{0x66, 0x89, 0x02}, db, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 2, Write: true}},
		{"mov %al,(%rdx)", []byte{0x88, 0x02}, db, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 1, Write: true}},
		{"mov %ah,(%rdx)", []byte{0x88, 0x22}, db, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 1, Write: true}},
		{"movb $1,(%rax)", []byte{0xc6, 0x00, 0x01}, db, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: 1, Write: true}},
		{"8 bytes elsewhere in the page", []byte{0x48, 0x89, 0x02}, db + 8,
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db + 8, Len: 8, Write: true}},
		{"the page's last bytes", []byte{0x48, 0x89, 0x02}, db + hypercall.DoorbellSize - 8,
			hv.Event{Kind: hv.EventBadDoorbell, Addr: db + hypercall.DoorbellSize - 8, Len: 8, Write: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := regs()
			ev, a := decodeStop(segv(tt.addr), &r, tt.code)
			assert.Equal(t, tt.want, ev)
			assert.Equal(t, len(tt.code), a.insnLen, "RIP advances by the instruction length")
		})
	}
}

// TestDoorbellLoads: a load from the doorbell page is a bad access whose
// destination register gets what CompleteRead gives, merged as the CPU does.
func TestDoorbellLoads(t *testing.T) {
	const old = 0x1122334455667788
	for _, tt := range []struct {
		name  string
		code  []byte
		len   uint32
		field func(*unix.PtraceRegs) uint64
		want  uint64
	}{
		{"mov (%rdx),%rax", []byte{0x48, 0x8b, 0x02}, 8, func(r *unix.PtraceRegs) uint64 { return r.Rax }, ^uint64(0)},
		{"mov (%rdx),%eax zero-extends", []byte{0x8b, 0x02}, 4, func(r *unix.PtraceRegs) uint64 { return r.Rax }, 0xffffffff},
		{"mov (%rdx),%ax merges", []byte{0x66, 0x8b, 0x02}, 2, func(r *unix.PtraceRegs) uint64 { return r.Rax }, 0x112233445566ffff},
		{"mov (%rdx),%al merges", []byte{0x8a, 0x02}, 1, func(r *unix.PtraceRegs) uint64 { return r.Rax }, 0x11223344556677ff},
		{"mov (%rdx),%ah: bits 15:8", []byte{0x8a, 0x22}, 1, func(r *unix.PtraceRegs) uint64 { return r.Rax }, 0x112233445566ff88},
		{"mov (%rdx),%sil", []byte{0x40, 0x8a, 0x32}, 1, func(r *unix.PtraceRegs) uint64 { return r.Rsi }, 0x11223344556677ff},
		{"mov (%rdx),%r9", []byte{0x4c, 0x8b, 0x0a}, 8, func(r *unix.PtraceRegs) uint64 { return r.R9 }, ^uint64(0)},
		{"movabs 0xd0000000,%rax", []byte{0x48, 0xa1, 0, 0, 0, 0xd0, 0, 0, 0, 0}, 8, func(r *unix.PtraceRegs) uint64 { return r.Rax }, ^uint64(0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := regs()
			r.Rax, r.Rsi, r.R9 = old, old, old
			ev, a := decodeStop(segv(db), &r, tt.code)
			assert.Equal(t, hv.Event{Kind: hv.EventBadDoorbell, Addr: db, Len: tt.len}, ev)
			require.Equal(t, len(tt.code), a.insnLen)
			completeLoad(a, &r, ^uint64(0))
			assert.Equal(t, tt.want, tt.field(&r))
			assert.Equal(t, uint64(db), r.Rdx, "the address register is untouched")
		})
	}
}

// TestDoorbellUnemulated: an access lhpvm does not emulate fails the run,
// naming the instruction, as KVM's emulation failure does.
func TestDoorbellUnemulated(t *testing.T) {
	for name, code := range map[string][]byte{
		"xchg %rax,(%rdx)":    {0x48, 0x87, 0x02},
		"addq $1,(%rax)":      {0x48, 0x83, 0x00, 0x01},
		"movups %xmm0,(%rax)": {0x0f, 0x11, 0x00},
		"mov %ds,(%rdx)":      {0x8c, 0x1a},
		"mov (%rdx),%ds":      {0x8e, 0x1a},
		"rep stosq":           {0xf3, 0x48, 0xab},
		"undecodable":         {0xff, 0xff},
		"xor with two REX":    {0x41, 0x42, 0x30, 0x31},
		"REX, nothing more":   {0x48, 0x48},
		"16 bytes with REX":   {0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x48, 0xc7, 0x02, 0, 0, 0, 0},
		"truncated":           {0x48, 0xc7},
	} {
		t.Run(name, func(t *testing.T) {
			r := regs()
			ev, a := decodeStop(segv(db), &r, code)
			assert.Equal(t, hv.EventFailed, ev.Kind)
			assert.NotEmpty(t, ev.Reason)
			assert.Zero(t, a.insnLen, "RIP is left at the instruction")
		})
	}
	r := regs()
	ev, _ := decodeStop(segv(db), &r, []byte{0x48, 0x87, 0x02})
	assert.Contains(t, ev.Reason, "xchg")
}

// TestFaults: every other stop is a guest fault reported like KVM's.
func TestFaults(t *testing.T) {
	const addr = 0x80000000
	base := func(v uint64) hv.Fault {
		return hv.Fault{Vector: v, RIP: rip, CS: 0x33, RSP: 0x3ff7f00, RFLAGS: 0x202}
	}
	pf := func(errCode, cr2 uint64) hv.Fault {
		f := base(hv.VectorPF)
		f.ErrorCode, f.CR2 = errCode, cr2
		return f
	}
	with := func(f hv.Fault, detail string) hv.Fault { f.Detail = detail; return f }
	store := []byte{0xc7, 0x00, 0xad, 0xde, 0, 0} // movl $0xdead,(%rax)
	load := []byte{0x8b, 0x00}                    // mov (%rax),%eax
	for _, tt := range []struct {
		name string
		si   sigInfo
		code []byte
		want hv.Fault
	}{
		{"#GP", sigInfo{Signo: int32(unix.SIGSEGV), Code: siKernel}, []byte{0xf4}, base(hv.VectorGP)},
		{"#PF write, not present", segv(addr), store, pf(hv.PFUser|hv.PFWrite, addr)},
		{"#PF read, not present", segv(addr), load, pf(hv.PFUser, addr)},
		{"#PF write, protection", sigInfo{Signo: int32(unix.SIGSEGV), Code: segvAccErr, Addr: addr}, store,
			pf(hv.PFUser|hv.PFWrite|hv.PFPresent, addr)},
		{"#PF push", segv(addr), []byte{0x50}, pf(hv.PFUser|hv.PFWrite, addr)},
		{"#PF cmp reads", segv(addr), []byte{0x48, 0x39, 0x18}, pf(hv.PFUser, addr)},
		{"#PF add writes", segv(addr), []byte{0x48, 0x01, 0x18}, pf(hv.PFUser|hv.PFWrite, addr)},
		{"#PF rep movsb writes", segv(addr), []byte{0xf3, 0xa4}, pf(hv.PFUser|hv.PFWrite, addr)},
		{"#PF fetch", segv(rip), nil, pf(hv.PFUser|hv.PFFetch, rip)},
		{"#PF other SIGSEGV code", sigInfo{Signo: int32(unix.SIGSEGV), Code: 4, Addr: addr}, load,
			with(pf(0, addr), "SIGSEGV code 4")},
		{"#AC", sigInfo{Signo: int32(unix.SIGBUS), Code: busAdrAln}, load, base(hv.VectorAC)},
		{"#SS", sigInfo{Signo: int32(unix.SIGBUS), Code: siKernel}, load,
			with(base(hv.VectorSS), "SIGBUS code 0x80 (#SS, or #NP on a segment load)")},
		{"bus error", sigInfo{Signo: int32(unix.SIGBUS), Code: busAdrErr, Addr: addr}, load,
			with(pf(hv.PFUser|hv.PFPresent, addr), "bus error: no page behind the address")},
		{"#UD", sigInfo{Signo: int32(unix.SIGILL), Code: 2}, []byte{0x0f, 0x0b}, base(hv.VectorUD)},
		{"#DE", sigInfo{Signo: int32(unix.SIGFPE), Code: fpeIntDiv}, []byte{0xf7, 0xf1}, base(hv.VectorDE)},
		{"#MF", sigInfo{Signo: int32(unix.SIGFPE), Code: 3}, nil,
			with(base(hv.VectorMF), "floating-point exception (x87 #MF or SIMD #XM), SIGFPE code 3")},
		{"#BP", sigInfo{Signo: int32(unix.SIGTRAP), Code: siKernel}, nil, base(hv.VectorBP)},
		{"#DB single step", sigInfo{Signo: int32(unix.SIGTRAP), Code: trapTrace}, nil, with(base(hv.VectorDB), "single step")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := regs()
			if tt.name == "#PF fetch" {
				r.Rip = rip
			}
			ev, a := decodeStop(tt.si, &r, tt.code)
			assert.Equal(t, hv.Event{Kind: hv.EventFault, Fault: tt.want}, ev)
			assert.Zero(t, a.insnLen)
		})
	}
	t.Run("a fetch from the doorbell is a fault, not a hypercall", func(t *testing.T) {
		r := regs()
		r.Rip = db
		ev, _ := decodeStop(segv(db), &r, nil)
		assert.Equal(t, hv.EventFault, ev.Kind)
		assert.Equal(t, uint64(hv.PFUser|hv.PFFetch), ev.Fault.ErrorCode)
	})
	t.Run("a doorbell store from outside guest RAM", func(t *testing.T) {
		r := regs()
		r.Rip = 0x10000001000 // the stub's own code
		ev, a := decodeStop(segv(db), &r, nil)
		assert.Equal(t, hv.EventFault, ev.Kind)
		assert.Contains(t, ev.Fault.Detail, "outside guest RAM")
		assert.Zero(t, a.insnLen)
	})
}

// TestSyscalls: a trapped syscall is reported with its number, convention
// and the address of the instruction (SIGSYS gives the one after it).
func TestSyscalls(t *testing.T) {
	for _, tt := range []struct {
		name string
		si   sigInfo
		nr   uint64
		arch hv.SyscallArch
	}{
		{"syscall write", sigInfo{Signo: int32(unix.SIGSYS), Code: sysSeccomp, Addr: rip + 2, Syscall: 1, Arch: auditArchX8664}, 1, hv.ArchX8664},
		{"int $0x80 write", sigInfo{Signo: int32(unix.SIGSYS), Code: sysSeccomp, Addr: rip + 2, Syscall: 4, Arch: auditArchI386}, 4, hv.ArchI386},
		{"x32 execve", sigInfo{Signo: int32(unix.SIGSYS), Code: sysSeccomp, Addr: rip + 2, Syscall: x32SyscallBit | 520, Arch: auditArchX8664},
			x32SyscallBit | 520, hv.ArchX32},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := regs()
			r.Rip = rip + 2
			ev, _ := decodeStop(tt.si, &r, nil)
			assert.Equal(t, hv.EventSyscall, ev.Kind)
			assert.Equal(t, tt.nr, ev.Nr)
			assert.Equal(t, tt.arch, ev.Arch)
			assert.Equal(t, rip, ev.Fault.RIP)
		})
	}
}

// TestVsyscall: a call into the vsyscall page (gettimeofday at its start)
// is a system call the kernel emulates; it reports the address called.
func TestVsyscall(t *testing.T) {
	r := regs()
	r.Rip = vsyscallStart
	ev, _ := decodeStop(sigInfo{Signo: int32(unix.SIGSYS), Code: sysSeccomp, Addr: vsyscallStart, Syscall: 96, Arch: auditArchX8664}, &r, nil)
	assert.Equal(t, hv.EventSyscall, ev.Kind)
	assert.EqualValues(t, 96, ev.Nr)
	assert.Equal(t, uint64(vsyscallStart), ev.Fault.RIP)
}

func TestOtherStops(t *testing.T) {
	assert.True(t, sigInfo{Signo: int32(unix.SIGSEGV), Code: 0}.external(), "kill(2)")
	assert.True(t, sigInfo{Signo: int32(unix.SIGSEGV), Code: -6}.external(), "tgkill(2)")
	assert.False(t, segv(db).external())
	r := regs()
	ev, _ := decodeStop(sigInfo{Signo: int32(unix.SIGSYS), Code: 5}, &r, nil)
	assert.Equal(t, hv.EventFailed, ev.Kind, "a SIGSYS not from seccomp")
	ev, _ = decodeStop(sigInfo{Signo: int32(unix.SIGUSR1), Code: 1}, &r, nil)
	assert.Equal(t, hv.EventFailed, ev.Kind)
	assert.True(t, synchronous(unix.SIGSEGV))
	assert.False(t, synchronous(host.KickSignal))
}

// TestDecoderCache: a cached decode gives the same answer as a fresh one,
// and code that changed under the cache is decoded afresh.
func TestDecoderCache(t *testing.T) {
	var d decoder
	code := []byte{0x48, 0xc7, 0x00, 0x05, 0, 0, 0}
	for i := 0; i < 3; i++ {
		r := regs()
		ev, a := d.stop(segv(db), &r, code)
		assert.Equal(t, hv.Event{Kind: hv.EventHypercall, Nr: 5, Addr: db, Len: 8, Write: true}, ev)
		assert.Equal(t, 7, a.insnLen)
	}
	code[3] = 6 // self-modifying guest
	r := regs()
	ev, _ := d.stop(segv(db), &r, code)
	assert.Equal(t, uint64(6), ev.Nr)
	code = []byte{0x89, 0x02, 0x90, 0x90, 0x90, 0x90, 0x90} // now a 4-byte store at the same RIP
	ev, a := d.stop(segv(db), &r, code)
	assert.Equal(t, hv.EventBadDoorbell, ev.Kind)
	assert.Equal(t, 2, a.insnLen)
	ev, _ = d.stop(segv(db), &r, nil)
	assert.Equal(t, hv.EventFault, ev.Kind, "RIP left guest RAM: no cache hit")
}

// BenchmarkDecodeDoorbell: the decode of a NULL hypercall, fresh and cached.
func BenchmarkDecodeDoorbell(b *testing.B) {
	code := []byte{0x48, 0xc7, 0x00, 0x00, 0, 0, 0}
	b.Run("x86asm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := regs()
			decodeStop(segv(db), &r, code)
		}
	})
	b.Run("cached", func(b *testing.B) {
		var d decoder
		b.ReportAllocs()
		for b.Loop() {
			r := regs()
			d.stop(segv(db), &r, code)
		}
	})
}

// FuzzDecodeStop: whatever the guest executes and whatever signal it
// causes, decoding never panics, never claims more than the instruction,
// calls only an 8-byte store at the doorbell a hypercall, and the cached
// decoder agrees with the uncached one.
func FuzzDecodeStop(f *testing.F) {
	f.Add([]byte{0x48, 0xc7, 0x00, 0x05, 0, 0, 0}, int32(unix.SIGSEGV), int32(segvMapErr), db, uint64(0))
	f.Add([]byte{0x8b, 0x02}, int32(unix.SIGSEGV), int32(segvMapErr), db+4, uint64(1))
	f.Add([]byte{0x48, 0x87, 0x02}, int32(unix.SIGSEGV), int32(segvMapErr), db, uint64(2))
	f.Add([]byte{0x0f, 0x05}, int32(unix.SIGSYS), int32(sysSeccomp), rip+2, uint64(3))
	f.Add([]byte{0xf4}, int32(unix.SIGSEGV), int32(siKernel), uint64(0), uint64(4))
	f.Fuzz(func(t *testing.T, code []byte, signo, sicode int32, addr, data uint64) {
		if len(code) > maxInsnLen {
			code = code[:maxInsnLen]
		}
		si := sigInfo{Signo: signo, Code: sicode, Addr: addr, Syscall: int32(data), Arch: uint32(data >> 32)}
		r1, r2 := regs(), regs()
		ev, a := decodeStop(si, &r1, code)
		var d decoder
		d.stop(si, &r2, code) // fills the cache
		ev2, a2 := d.stop(si, &r2, code)
		if ev != ev2 || a != a2 {
			t.Fatalf("cache disagrees: %+v %+v vs %+v %+v", ev, a, ev2, a2)
		}
		if a.insnLen > len(code) {
			t.Fatalf("an access of %d bytes from %d bytes of code", a.insnLen, len(code))
		}
		if ev.Kind == hv.EventHypercall && (addr != db || ev.Len != 8 || !ev.Write) {
			t.Fatalf("a hypercall from %+v", ev)
		}
		if (ev.Kind == hv.EventHypercall || ev.Kind == hv.EventBadDoorbell) != (a.insnLen > 0) {
			t.Fatalf("%v with an access of %d bytes", ev.Kind, a.insnLen)
		}
		if a.insnLen > 0 && !a.write {
			completeLoad(a, &r1, data)
		}
	})
}
