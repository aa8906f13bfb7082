package hypercall

//go:generate go run ./gen -o ../guest/include/lhpvm_abi.h

// Version is the ABI version. The VMM writes it into BootInfo.ABIVersion and
// the guest refuses to run on a mismatch.
const Version = 1

// BootMagic is BootInfo.Magic ("LHPV" little-endian).
const BootMagic = 0x5650484c

// Boot protocol v2: an image that can run on a backend without ring 0
// (ptrace) declares its ring-3 entry in a PT_NOTE segment: a note with owner
// NoteOwner (namesz 6, the NUL included), type NoteUserEntry, and an 8-byte
// descriptor holding the entry address (u64, little-endian), as Xen's PVH
// boot declares its alternative entry. KVM starts every image at its ELF
// entry in ring 0, so one image runs on both.
const (
	BootProtocol      = 2
	NoteOwner         = "LHPVM"
	NoteUserEntry     = 1
	NoteUserEntrySize = 8
)

// Guest physical memory map. Everything is identity mapped (virtual ==
// physical) with 2 MiB pages that carry the U bit, so ring 3 reaches all of it.
const (
	// BootInfoGPA is where the VMM writes the BootInfo page.
	BootInfoGPA = 0x1000
	// PageTableGPA is the first page of the VMM-built page tables (PML4,
	// then PDPT, then the page directories).
	PageTableGPA = 0x2000
	// PageTableEnd bounds the page-table area.
	PageTableEnd = 0x10000
	// ImageMinGPA is the lowest address a guest image may load at.
	ImageMinGPA = 0x100000
	// DoorbellGPA is the hypercall doorbell: an 8-byte write of a call number
	// here leaves the guest with one KVM_EXIT_MMIO. No memslot covers it.
	DoorbellGPA = 0xD0000000
	// DoorbellSize is the doorbell page: any access inside it that is not
	// an 8-byte write at DoorbellGPA is a bad doorbell access.
	DoorbellSize = 2 << 20
	// MaxMemBytes bounds guest RAM so that it stays below the doorbell.
	MaxMemBytes = 2 << 30
	// PageSize is the guest page size used for the ABI structures.
	PageSize = 4096
)

// Per-vCPU block: the VMM carves one block per vCPU from the top of guest RAM.
// Blocks are VCPUBlockSize-aligned, so ring-0 code finds its block (and the
// VCPUPage at its start) as RSP & ^(VCPUBlockSize-1).
const (
	VCPUBlockSize   = 0x8000 // 32 KiB
	BlockPageOff    = 0x0000 // VCPUPage, shared with the VMM
	BlockGDTOff     = 0x1000 // this vCPU's GDT (GDTEntries entries)
	BlockTSSOff     = 0x1080 // this vCPU's 64-bit TSS
	BlockKStackLow  = 0x2000 // ring-0 stack [0x2000, 0x3000)
	BlockKStackTop  = 0x3000
	BlockUStackLow  = 0x3000 // ring-3 stack [0x3000, 0x8000)
	BlockUStackTop  = 0x8000
	LockAreaSize    = 0x10000 // shared lock slots for the lock workloads
	LockSlotSize    = 128
	MaxLocks        = LockAreaSize / LockSlotSize
	MaxVCPUs        = 1024
	MaxPrintLen     = 4096
	HistogramBucket = 48 // log2 buckets of cycles in the acquire-latency histogram
)

// GDT selectors the VMM installs in every vCPU's GDT.
const (
	SelKernelCode = 0x08
	SelKernelData = 0x10
	SelUserData   = 0x18 // use with RPL 3: 0x1b
	SelUserCode   = 0x20 // use with RPL 3: 0x23
	SelTSS        = 0x28 // 16-byte descriptor (two entries)
	GDTEntries    = 7
)

// Call numbers. The guest stores arguments in VCPUPage.Args, then writes the
// call number (8 bytes) to DoorbellGPA; when the write completes the VMM has
// stored the result in VCPUPage.Ret. One exit per call, no register access.
const (
	CallNull  = 0 // () -> 0. For measuring the round trip.
	CallExit  = 1 // (code) -> does not return; this vCPU is finished.
	CallPrint = 2 // (gpa, len) -> len. Bytes go to the VMM's console.
	CallKick  = 3 // (vcpu) -> 0. Wake vcpu from WAIT, or make its next WAIT return at once.
	CallWait  = 4 // (gpa, expected) -> Wait*. Block while *(u32*)gpa == expected and no kick is pending.
	CallYield = 5 // (vcpu or YieldAny) -> 0. Give up the physical CPU, to vcpu if the policy allows.
	CallFault = 6 // () -> does not return. Ring-0 fault report; fields in VCPUPage.Fault*.
	NumCalls  = 7
)

// YieldAny is the YIELD argument that names no target.
const YieldAny = 0xFFFFFFFFFFFFFFFF

// WAIT results (non-negative).
const (
	WaitWoken       = 0 // blocked, then woken by a KICK (or spuriously: re-check)
	WaitValueChange = 1 // *gpa != expected: did not block
	WaitKickPending = 2 // a KICK was already pending: consumed it, did not block
)

// Error results: negative, errno-like, so the guest can test ret < 0.
const (
	ErrFault = -14 // a guest address is outside RAM or misaligned
	ErrInval = -22 // a bad argument (vCPU id out of range, bad length, ...)
	ErrNoSys = -38 // unknown call number
)

// Workload numbers carried in BootInfo.Workload.
const (
	WorkloadHello   = 1 // every vCPU prints its id and exits
	WorkloadCounter = 2 // shared counter under a test-and-set lock
	WorkloadNull    = 3 // Iterations NULL hypercalls timed with rdtsc
	WorkloadLock    = 4 // the lock benchmark (lock lab)
	WorkloadHog     = 5 // pure CPU loop reporting progress
	// Test workloads: they misbehave on purpose.
	WorkloadSpin        = 16 // spin forever in ring 3, ignoring Stop (runaway guest)
	WorkloadFaultGP     = 17 // #GP in ring 3 (privileged instruction)
	WorkloadFaultPF     = 18 // #PF in ring 3 (write to an unmapped address)
	WorkloadFaultTriple = 19 // wreck the IDT, then fault: triple fault
	WorkloadHostile     = 20 // bad hypercalls; checks each error code, then exits
	WorkloadWaitForever = 21 // every vCPU WAITs with nobody to kick it (lost wakeup)
	// Guests that try to reach the host kernel: each must be stopped before
	// its call takes effect (ptrace: seccomp traps it; KVM: #UD or #GP).
	WorkloadSyscallWrite  = 22 // syscall: write(1, ...)
	WorkloadSyscallOpen   = 23 // syscall: openat(AT_FDCWD, EscapePath, O_CREAT|O_WRONLY), then creat
	WorkloadSyscallExecve = 24 // syscall: execve("/bin/sh", {"sh", "-c", "touch " EscapePath})
	WorkloadSyscallInt80  = 25 // int $0x80: the i386 creat(EscapePath)
	// WorkloadCode: every vCPU calls the machine code the VMM copied to
	// BootInfo.CodeGPA (CodeLen bytes, the rest of the page int3), with
	// RDI = BootInfo, RSI = vCPU id, RDX = its VCPUPage, RSP on its ring-3
	// stack (the return address on top) and every other register zero. If
	// the code returns, the vCPU EXITs 0. For fuzzing the VMM with guests.
	WorkloadCode = 26
)

// MaxCodeLen bounds WorkloadCode's code: one page.
const MaxCodeLen = PageSize

// EscapePath is the file the syscall workloads try to create on the host;
// tests check that it never appears.
const EscapePath = "/tmp/lhpvm-guest-escaped"

// FaultUnmappedGPA is an address the page tables do not map (WorkloadFaultPF
// writes there).
const FaultUnmappedGPA = 0x80000000

// Lock kinds carried in BootInfo.LockKind (the lock lab).
const (
	LockTAS       = 1
	LockTTAS      = 2
	LockTicket    = 3
	LockMCS       = 4
	LockPVTicket  = 5
	LockPVQSpin   = 6
	LockSpinYield = 7
	LockPTicket   = 8
	LockQSpin     = 9  // Linux's native queued spinlock: locked byte, pending bit, MCS tail
	LockVirt      = 10 // Linux's virt_spin_lock: test-and-set, what a KVM guest without PV_UNHALT uses
	LockBroken    = 99 // test only: no mutual exclusion; the self-check must catch it
)

// BootInfo flags.
const (
	FlagDelayHint      = 1 << 0 // set VCPUPage.InCS around critical sections; YIELD after release if asked
	FlagPreemptedAware = 1 << 1 // waiters read the holder's VCPUPage.Preempted
)

// pvqspin knobs (BootInfo.PV*): zero is Linux's current behaviour.
const (
	PVStealHybrid = 0 // pv_hybrid_queued_unfair_trylock: steal while the lock is free and pending clear
	PVStealOff    = 1 // no stealing: strict FIFO hand-over through the queue
	PVStealOnce   = 2 // v4.5-4.14: one attempt before queueing

	PVPendingOn  = 0 // the queue head sets the pending bit while it spins (blocks stealers)
	PVPendingOff = 1

	PVPrevCheckNode      = 0 // every 256 spins: is the predecessor's node running?
	PVPrevCheckOff       = 1 // no early wait
	PVPrevCheckPreempted = 2 // read the host's preempted flag of the predecessor's vCPU instead

	PVKickDeferred  = 0 // pv_kick_node: the new holder marks a halted successor's lock slow; unlock kicks
	PVKickImmediate = 1 // kick the halted successor at once
)

// pticket's timeout unit, 1 << PTicketShift spins: the default is the
// TIMEOUT_UNIT of Ouyang & Lange's patch (VEE'13), 1 << 14.
const (
	DefaultPTicketShift = 14
	MaxPTicketShift     = 30
)

// GrantHanded is set in LockSlot.Granted while a FIFO release has handed the
// lock to a waiter that has not taken it yet (the low 32 bits name it).
const GrantHanded = 1 << 32

// Lock states published in VCPUPage.LockState.
const (
	LockStateNone    = 0
	LockStateWaiting = 1
	LockStateHolding = 2
	LockStateSlow    = 3 // waiting in the pv slow path: about to WAIT, or in WAIT
)

// BootInfo is the page at BootInfoGPA. The VMM fills it before the first
// KVM_RUN; afterwards it only ever writes Stop.
type BootInfo struct {
	Magic         uint32
	ABIVersion    uint32
	NrVCPUs       uint32
	Workload      uint32
	Iterations    uint64 // per vCPU; 0 means "until Stop"
	TSCkHz        uint64 `c:"tsc_khz"`
	MemBytes      uint64
	DoorbellGPA   uint64
	VCPUBlocksGPA uint64 // block of vCPU i is at VCPUBlocksGPA + i*VCPUBlockSize
	VCPUBlockSize uint64
	LocksGPA      uint64 // MaxLocks slots of LockSlotSize bytes
	NrLocks       uint32
	LockKind      uint32
	CSCycles      uint64
	ThinkCycles   uint64
	SpinThreshold uint64
	Flags         uint32
	PVSteal       uint32 // PVSteal*
	PVPending     uint32 // PVPending*
	PVPrevCheck   uint32 // PVPrevCheck*
	PVKick        uint32 // PVKick*
	// PTicketShift: pticket's waiter times out after (its distance from
	// the head) << PTicketShift spins (0: DefaultPTicketShift).
	PTicketShift uint32
	// SpinThresholdHead: spins of pvqspin's queue head before it WAITs
	// (0: SpinThreshold).
	SpinThresholdHead uint64
	// CodeGPA, CodeLen: WorkloadCode's code page and how many bytes of it
	// are code (0, 0 for other workloads).
	CodeGPA uint64
	CodeLen uint64
	_       [45]uint64
	// Written by the VMM while the guest runs (own cache line).
	Stop uint32 // non-zero: finish the current operation and EXIT
	_    [15]uint32
}

// VCPUPage is the first page of each vCPU block, shared by guest and VMM.
// Sections sit on their own cache lines: the VMM writes the host section while
// the guest spins on locks.
type VCPUPage struct {
	// Hypercall mailbox.
	Args [6]uint64
	Ret  int64
	_    uint64

	// Host -> guest.
	Preempted      uint32 // runnable but not running on a physical CPU
	YieldRequested uint32 // the scheduler asks for a YIELD at the next release
	StealNs        uint64
	_              [6]uint64

	// Guest -> host: what this vCPU is doing right now.
	InCS      uint32 // inside a critical section (delay hint)
	LockState uint32 // LockState*
	LockID    uint32
	Ticket    uint32
	_         [6]uint64

	// Ring-0 fault report, filled before CallFault.
	FaultVector uint64
	FaultError  uint64
	FaultRIP    uint64
	FaultCS     uint64
	FaultRFLAGS uint64
	FaultRSP    uint64
	FaultCR2    uint64
	_           uint64

	// Counters, written by the guest, read by the VMM after EXIT.
	Ops              uint64 // completed operations (iterations)
	Acquisitions     uint64
	SpinCycles       uint64
	SlowPaths        uint64
	Waits            uint64
	Kicks            uint64
	Yields           uint64
	StartTSC         uint64
	EndTSC           uint64
	HypercallCycles  uint64                  // null workload: cycles spent in the timed loop
	Result           uint64                  // workload-specific result
	CheckFailures    uint64                  // self-check failures seen by this vCPU
	CheckFailLock    uint64                  // lock index + 1 of the first failed check (0: none)
	CheckFailOwner   uint64                  // the owner value found there (vCPU id + 1)
	AcquireMaxCycles uint64                  // the longest acquisition, exact
	WaitCycles       uint64                  // cycles spent blocked in WAIT (subset of SpinCycles)
	AcquireHist      [HistogramBucket]uint64 // log2(cycles) buckets

	// Lock events, named as in Linux's kernel/locking/lock_events_list.h.
	LockSlowpath     uint64 // locking ops through the MCS queue
	LockPending      uint64 // locking ops through the pending bit
	PVLockStealing   uint64 // locks stolen out of queue order
	PVWaitNode       uint64 // WAITs of a queued (non-head) waiter
	PVWaitHead       uint64 // WAITs of the queue head
	PVWaitEarly      uint64 // WAITs before the spin threshold: the predecessor was not running
	PVWaitAgain      uint64 // WAITs of a head that had already been kicked
	PVSpuriousWakeup uint64 // a queued waiter woken without having become the head
	PVKickUnlock     uint64 // KICKs at unlock time
	PVKickWake       uint64 // wake-ups timed for PVLatencyWake
	PVHashHops       uint64 // probes of the lock -> node hash (sum)
	PVHashOps        uint64 // hash insertions (PVHashHops / PVHashOps: the average)
	PVLatencyKick    uint64 // cycles spent in KICK hypercalls (sum over Kicks)
	PVLatencyWake    uint64 // cycles from a KICK to the woken vCPU running (sum over PVKickWake)
	KickTSC          uint64 // written by a kicker: when it kicked this vCPU (0: none pending)
	_                uint64

	// Guest-private scratch (e.g. the MCS queue node) up to the page end.
	Scratch [3200]byte
}

// LockSlot is one lock of the lock area: the lock word(s) and the data it
// protects, on its own 128 bytes.
type LockSlot struct {
	Word    uint64 // lock word (meaning depends on the lock kind)
	Word2   uint64 // second word (ticket: head/tail split, MCS: tail, ...)
	Counter uint64 // protected counter, incremented non-atomically in the CS
	Owner   uint64 // vCPU id + 1 of the holder, checked on the way out
	// Granted: the low 32 bits are vCPU id + 1 of the vCPU the lock is
	// granted to, 0 none: the holder (set by the acquirer), or the waiter a
	// FIFO release handed it to (then with GrantHanded, until that waiter
	// takes it). Every lock kind publishes it, so the host can measure the
	// time a lock spends with a vCPU that does not run, whatever the lock's
	// own layout.
	Granted uint64
	_       [11]uint64
}
