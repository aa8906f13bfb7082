/*
 * lock.h - the lock lab's common interface.
 *
 * One file per lock kind (lock_<name>.c) defines a `struct lock_impl`: an
 * acquire and a release function operating on one struct lhpvm_lock_slot.
 * lockbench.c runs the `lock` workload over them. The same C files are built
 * twice: for the guest (ring 3, guest.h), and with -DLHPVM_HOSTTEST for the
 * pthread harness in hosttest/, whose lhpvm_host.h provides the same small
 * runtime: rdtsc_ordered, cpu_relax, hc_wait, hc_kick, hc_yield, printf,
 * GUEST_ASSERT, GUEST_NOINLINE, GUEST_SPIN_TEXT, GUEST_CS_TEXT, lock_slots,
 * stop_requested. Nothing here may use anything else of guest.h (this_page()
 * in particular: a lock finds its own page through struct lock_ctx).
 *
 * Shared memory is only touched through the __atomic builtins below (plain
 * MOVs on x86 for relaxed/acquire/release), so that ThreadSanitizer in the
 * host harness sees every synchronisation; the one deliberate exception is
 * the protected counter, which lockbench.c increments non-atomically.
 *
 * ---- Code placement (the host's "monitor" policy reads RIP ranges) --------
 *
 * [__lhpvm_spin_start, __lhpvm_spin_end) = every lock's acquire function,
 *   whole: the fast-path attempt, the spin loops, and the slow paths with
 *   their WAIT / YIELD doorbell stores (helpers used there are always_inline).
 *   RIP here means "this vCPU wants a lock and does not have it yet" - except
 *   for the few instructions between the winning atomic and the return.
 * [__lhpvm_cs_start, __lhpvm_cs_end) = lockbench_op() (acquire call, owner
 *   check, counter increment, cs_cycles burn, owner check, release call),
 *   every lock's release function, and qspin_pass_head (the queued
 *   spinlocks' hand-over to the next queue head: it runs right after the
 *   acquire, holding the lock). RIP here means "this vCPU
 *   holds a lock", except lockbench_op's prologue before the acquire call and
 *   its tail after the release returns. MCS's release waits there (holding
 *   the lock) for a successor that has swung the tail but not yet linked in.
 * Outside both: the pv unlock kick paths (pvticket_unlock_kick,
 *   pvqspin_unlock_kick: they run after the lock word is released), the
 *   think-time burn, accounting, the delay-hint YIELD after a release, and
 *   the check-failure report.
 *
 * ---- Slot layouts (struct lhpvm_lock_slot; all-zero = unlocked) ----------
 *
 *   tas, ttas, broken: word = 0 free / 1 held.
 *   spinyield:         word = 0 free / holder vCPU id + 1.
 *   ticket, pvticket:  low 32 bits of word = head (ticket now served),
 *                      low 32 bits of word2 = tail (next ticket to hand out);
 *                      pvticket: spare[0] low 32 bits = number of waiters in
 *                      the slow path.
 *   pticket:           low 32 bits of word = grant (ticket now served),
 *                      low 32 bits of word2 = request (next ticket),
 *                      spare[0] low 32 bits = 0 free / holder vCPU id + 1.
 *   mcs:               word = tail: address of the last queue node, 0 = free.
 *   qspin, pvqspin:    low 32 bits of word = Linux's qspinlock word: bits
 *                      0-7 locked byte (1 locked, 3 = _Q_SLOW_VAL: locked
 *                      and a halted waiter is hashed for the unlock's KICK),
 *                      bits 8-15 pending, bits 16-31 tail (vCPU id + 1 of
 *                      the last queued node, 0 = no queue). The lock -> node
 *                      hash is a table of the guest's own (lock_qspinlock.c).
 *   virt:              the qspinlock word, used as a test-and-set lock.
 *   The host reads "ticket now served" of ticket/pvticket/pticket as the low
 *   32 bits of word (vmm/run.go nextInLine).
 * counter and owner belong to lockbench.c; owner is also the holder hint
 * (owner - 1) the tas/ttas/ticket/mcs/pv locks use to find the holder's vCPU.
 * granted (vCPU id + 1, 0 none) is who the lock is granted to: lockbench.c
 * sets it to the acquirer after the acquire and clears it before the
 * release; a FIFO lock's release (ticket, pvticket, pticket, mcs) sets it to
 * the waiter it hands the lock to, with LHPVM_GRANT_HANDED. The host reads
 * it for the time a lock spends with a vCPU that does not run.
 */
#ifndef LHPVM_LOCK_H
#define LHPVM_LOCK_H

#ifdef LHPVM_HOSTTEST
#include "lhpvm_host.h"
#else
#include "guest.h"
#endif

#define LOCK_INLINE static inline __attribute__((always_inline))

/* Spins before a slow path when bi->spin_threshold is 0 (Linux SPIN_THRESHOLD). */
#define LOCK_DEFAULT_SPIN_THRESHOLD (1u << 15)
/* Preempted-aware waiters look at the holder / next-in-line every 16 spins. */
#define LOCK_PREEMPT_CHECK_MASK 15u
/* pvqspin queued waiters look at their predecessor every 256 spins (Linux PV_PREV_CHECK_MASK). */
#define LOCK_PV_PREV_CHECK_MASK 255u
/* "No vCPU" for the holder lookups. */
#define LOCK_NO_VCPU 0xffffffffu

/* ---- shared-memory access ----------------------------------------------- */

#define lk_load(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define lk_load_acq(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define lk_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define lk_store_rel(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Strong compare-and-swap of *p from e to d; true if it swapped. */
#define lk_cas_(p, e, d, mo, mof)                                             \
	({                                                                    \
		__typeof__(*(p)) e_ = (e);                                    \
		__atomic_compare_exchange_n((p), &e_, (d), 0, (mo), (mof));   \
	})
#define lk_cas_acq(p, e, d) lk_cas_(p, e, d, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)
#define lk_cas_rel(p, e, d) lk_cas_(p, e, d, __ATOMIC_RELEASE, __ATOMIC_RELAXED)
#define lk_cas_acq_rel(p, e, d) lk_cas_(p, e, d, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
/* Sequentially consistent (a full fence on x86: LOCK CMPXCHG). */
#define lk_cas_full(p, e, d) lk_cas_(p, e, d, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

/* The low 32 bits of a 64-bit slot word (x86 is little-endian). WAIT takes
 * a 4-byte aligned u32, so the waited-on words are used this way. */
LOCK_INLINE uint32_t *lk_lo32(uint64_t *w)
{
	return (uint32_t *)w;
}

/* The 11 spare u64 of a slot (named _pad0 by the ABI generator). */
_Static_assert(sizeof(((struct lhpvm_lock_slot *)0)->_pad0) == 11 * sizeof(uint64_t),
	       "lock slot spare words");
LOCK_INLINE uint64_t *lock_spare(struct lhpvm_lock_slot *s, unsigned i)
{
	return &s->_pad0[i];
}

/* ---- the interface -------------------------------------------------------- */

/* What a lock needs to know about the acquiring vCPU (built by lockbench.c). */
struct lock_ctx {
	struct lhpvm_vcpu_page *page; /* this vCPU's page: counters, state, scratch */
	uintptr_t pages;              /* vCPU i's page is pages + i * LHPVM_VCPU_BLOCK_SIZE */
	uint32_t id;                  /* this vCPU */
	uint32_t nr_vcpus;
	uint32_t lock_index;          /* slot index, also published as page->lock_id */
	uint32_t flags;               /* bi->flags (LHPVM_FLAG_*) */
	uint64_t spin_threshold;      /* spins before a slow path, > 0 */
	uint64_t spin_threshold_head; /* pvqspin's queue head: spins before WAIT, > 0 */
	uint32_t p_ticket_shift;      /* pticket's timeout unit: 1 << this many spins */
	/* pvqspin's mechanisms (LHPVM_PV_*), from the boot info. */
	uint32_t pv_steal, pv_pending, pv_prev_check, pv_kick;
	uint64_t tsc_khz; /* bi->tsc_khz: converts the host's steal time to cycles */
};

struct lock_impl {
	const char *name;
	uint32_t kind; /* LHPVM_LOCK_* */
	void (*acquire)(struct lock_ctx *c, struct lhpvm_lock_slot *s);
	void (*release)(struct lock_ctx *c, struct lhpvm_lock_slot *s);
};

extern const struct lock_impl lock_tas, lock_ttas, lock_ticket, lock_mcs,
	lock_pvticket, lock_pvqspin, lock_spinyield, lock_pticket, lock_broken,
	lock_qspin, lock_virt;

/* lockbench.c: the lock of an LHPVM_LOCK_* kind, NULL if unknown. */
const struct lock_impl *lock_impl_by_kind(uint32_t kind);

/* ---- helpers for the lock files --------------------------------------------- */

LOCK_INLINE int lock_aware(const struct lock_ctx *c)
{
	return (c->flags & LHPVM_FLAG_PREEMPTED_AWARE) != 0;
}

LOCK_INLINE struct lhpvm_vcpu_page *lock_vcpu_page(const struct lock_ctx *c, uint32_t vcpu)
{
	return (struct lhpvm_vcpu_page *)(c->pages + (uintptr_t)vcpu * LHPVM_VCPU_BLOCK_SIZE);
}

/* Is vCPU v (LOCK_NO_VCPU: none) another vCPU that the host has preempted? */
LOCK_INLINE int lock_vcpu_preempted(const struct lock_ctx *c, uint32_t v)
{
	return v < c->nr_vcpus && v != c->id &&
	       lk_load(&lock_vcpu_page(c, v)->preempted) != 0; /* host-written hint */
}

/* The holder as lockbench.c publishes it in slot->owner (vCPU id + 1, set in
 * the CS; 0 right after the acquire and before the release). Relaxed, as are
 * the page loads below: hints that only aim a YIELD or a grant. */
LOCK_INLINE uint32_t lock_owner_vcpu(struct lhpvm_lock_slot *s)
{
	uint64_t o = lk_load(&s->owner);

	return o ? (uint32_t)(o - 1) : LOCK_NO_VCPU;
}

/* Ticket locks: the vCPU that holds or waits for `ticket` of this lock, from
 * what every vCPU publishes in its page (lock_id, ticket, lock_state). */
LOCK_INLINE uint32_t lock_ticket_vcpu(const struct lock_ctx *c, uint32_t ticket)
{
	for (uint32_t v = 0; v < c->nr_vcpus; v++) {
		struct lhpvm_vcpu_page *p = lock_vcpu_page(c, v);

		if (lk_load(&p->lock_state) != LHPVM_LOCK_STATE_NONE &&
		    lk_load(&p->lock_id) == c->lock_index && lk_load(&p->ticket) == ticket)
			return v;
	}
	return LOCK_NO_VCPU;
}

LOCK_INLINE void lock_set_state(struct lock_ctx *c, uint32_t state)
{
	lk_store(&c->page->lock_state, state); /* relaxed: see pvticket_slow's XADD */
}

LOCK_INLINE void lock_publish_ticket(struct lock_ctx *c, uint32_t ticket)
{
	lk_store(&c->page->ticket, ticket); /* relaxed: see pvticket_slow's XADD */
}

/* Counted hypercalls. The counters live in this vCPU's page; only this vCPU
 * writes them, but for kick_tsc, which a kicker writes into the kicked
 * vCPU's page (Linux's pv_kick_time, for pv_latency_wake). */
/* The steal time the host publishes in this vCPU's page (the time it was
 * runnable but not running; our scheduler updates it before each dispatch),
 * and the cycles of steal since steal0: a window measured with the TSC,
 * which runs on while the vCPU is off its pCPU, minus this is the time the
 * vCPU really spent in it. Relaxed: only this vCPU reads its own page's
 * steal, and the host wrote it before dispatching the vCPU. */
LOCK_INLINE uint64_t lock_steal_ns(struct lock_ctx *c)
{
	return lk_load(&c->page->steal_ns);
}

LOCK_INLINE uint64_t lock_steal_cycles(struct lock_ctx *c, uint64_t steal0, uint64_t window)
{
	uint64_t d = (lock_steal_ns(c) - steal0) * c->tsc_khz / 1000000;

	return d < window ? d : window;
}

LOCK_INLINE int64_t lock_wait(struct lock_ctx *c, uint32_t *word, uint32_t expected)
{
	uint64_t t0 = rdtsc_ordered(), t1, kicked, steal0 = lock_steal_ns(c);
	int64_t r = hc_wait(word, expected);

	t1 = rdtsc_ordered();
	/* Blocked time only: a kicked vCPU waits runnable for a pCPU before
	 * WAIT returns, and that is steal, taken out of the spin window once. */
	c->page->wait_cycles += (t1 - t0) - lock_steal_cycles(c, steal0, t1 - t0);
	c->page->waits++;
	GUEST_ASSERT(r >= 0);
	kicked = __atomic_exchange_n(&c->page->kick_tsc, 0, __ATOMIC_RELAXED); /* stats only */
	if (r == LHPVM_WAIT_WOKEN && kicked && kicked <= t1) {
		c->page->pv_kick_wake++;
		c->page->pv_latency_wake += t1 - kicked;
	}
	return r;
}

LOCK_INLINE void lock_kick(struct lock_ctx *c, uint32_t v)
{
	uint64_t t0 = rdtsc_ordered();
	int64_t r;

	lk_store(&lock_vcpu_page(c, v)->kick_tsc, t0); /* stats only: relaxed */
	r = hc_kick(v);
	c->page->pv_latency_kick += rdtsc_ordered() - t0;
	c->page->kicks++;
	GUEST_ASSERT(r == 0);
}

/*
 * The lock code does not rely on WAIT or KICK as fences. WAIT(word, v)
 * blocks only while *word == v and no KICK is pending (a KICK to a vCPU not
 * in WAIT stays pending), so a waiter's "publish; full fence; re-check; WAIT"
 * (pvticket_slow, pvq_wait_node, pvq_wait_head_or_lock) against a waker's
 * "store; full fence; check; KICK" (pvticket_release, qspin_pass_head,
 * pvqspin_release) loses no wakeup. KICK's doorbell store follows the
 * waker's earlier stores in x86 store order, so the woken vCPU sees them.
 */

/* ---- who the lock is granted to (slot->granted, read by the host) ---------- */

/* lockbench.c: the lock is vCPU v's, however it came to it (after every
 * acquire), or nobody's (LOCK_NO_VCPU, before every release). */
LOCK_INLINE void lock_grant(struct lhpvm_lock_slot *s, uint32_t v)
{
	/* Relaxed: after the lock's acquire, which matches the release that
	 * followed the releaser's lock_hand_to, so ours comes later. */
	lk_store(&s->granted, v == LOCK_NO_VCPU ? 0 : (uint64_t)v + 1);
}

/* A FIFO release hands the lock to waiter v (LOCK_NO_VCPU: nobody it
 * knows of). Called before the hand-over store, while the releaser still
 * holds the lock, so a stale hand-over never overwrites the new holder's
 * own grant. */
LOCK_INLINE void lock_hand_to(struct lhpvm_lock_slot *s, uint32_t v)
{
	/* Relaxed: the hand-over's release store orders it (see lock_grant). */
	lk_store(&s->granted, v == LOCK_NO_VCPU ? 0 : ((uint64_t)v + 1) | LHPVM_GRANT_HANDED);
}

LOCK_INLINE void lock_yield(struct lock_ctx *c, uint64_t v)
{
	hc_yield(v);
	c->page->yields++;
}

/* Locks without a WAIT slow path, preempted-aware: give the physical CPU to
 * vCPU v if it is preempted (it is the one we are waiting for). Returns
 * whether it yielded. */
LOCK_INLINE int lock_yield_if_preempted(struct lock_ctx *c, uint32_t v)
{
	if (!lock_vcpu_preempted(c, v))
		return 0;
	lock_yield(c, v);
	return 1;
}

/* ---- queue nodes (mcs, pvqspin) -------------------------------------------- */

/* A vCPU waits for one lock at a time, so one node in its page's scratch
 * area serves every lock. Other vCPUs write into it (next, locked, state). */
struct lock_qnode {
	uint64_t next;   /* address of the successor's node, 0 = none (yet) */
	uint32_t locked; /* 1: the predecessor passed us the lock (mcs) / the queue head (pvqspin) */
	uint32_t state;  /* pvqspin: QNODE_* below; the WAIT word of a halted waiter */
	uint32_t cpu;    /* the node's vCPU */
	uint32_t _pad[11];
};
_Static_assert(sizeof(struct lock_qnode) == 64, "one cache line");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, scratch) % 64 == 0,
	       "scratch is cache-line aligned");
_Static_assert(sizeof(struct lock_qnode) <= sizeof(((struct lhpvm_vcpu_page *)0)->scratch),
	       "node fits in scratch");

#define QNODE_RUNNING 0u
#define QNODE_HALTED 1u /* about to WAIT / in WAIT on state */
#define QNODE_HASHED 2u /* pvqspin: predecessor saw it halted and left the kick to its unlock */

LOCK_INLINE struct lock_qnode *lock_my_qnode(struct lock_ctx *c)
{
	return (struct lock_qnode *)(void *)c->page->scratch;
}

/* ---- the workload (lockbench.c) --------------------------------------------- */

int workload_lock(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page);

#endif /* LHPVM_LOCK_H */
