/*
 * lock_qspinlock.c - Linux's queued spinlock, native (qspin) and
 * paravirtual (pvqspin), on one 32-bit word. Our own code written from the
 * semantics of kernel/locking/qspinlock.c and qspinlock_paravirt.h; every
 * pv mechanism the ablation studies is a knob (struct lock_ctx, from the
 * boot info).
 *
 * The word (low 32 bits of slot->word): bits 0-7 the locked byte (1, or
 * Q_SLOW: locked, and a halted waiter is in the lock -> node hash for the
 * unlocker to KICK), bits 8-15 the pending byte, bits 16-31 the tail: vCPU
 * id + 1 of the last queued node (one node per vCPU, in its page's scratch:
 * a vCPU waits for one lock at a time, so Linux's per-CPU node index is not
 * needed).
 *
 * Acquire (both): CAS 0 -> locked. Then the slow path:
 *  - native only, the pending fast path: with no queue and no pending
 *    owner, set pending, wait for the locked byte to clear, then take the
 *    lock and clear pending in one 16-bit store (lock_pending). pv skips it,
 *    as Linux does (pv_queue).
 *  - the MCS queue (lock_slowpath): a trylock first - pv: the hybrid unfair
 *    trylock (pv_hybrid_queued_unfair_trylock: steal while the lock is free
 *    and pending is clear, as long as there is a queue; pv_lock_stealing),
 *    or once (v4.5-4.14), or off. Then swap our tail into the word, link
 *    behind the predecessor and wait to become the head: native spins on our
 *    node; pv_wait_node spins spin_threshold times, every 256 spins checks
 *    whether the predecessor runs (its node state, or its vCPU's preempted
 *    flag; pv_wait_early), then marks the node halted and WAITs on its state
 *    (pv_wait_node, pv_spurious_wakeup).
 *  - the head: native waits for locked and pending to clear;
 *    pv_wait_head_or_lock sets pending (blocking stealers), spins
 *    spin_threshold_head times trying to take the lock, then - once -
 *    hashes lock -> node, swaps the locked byte to Q_SLOW (if it was free,
 *    the lock is ours) and WAITs on the word while its locked byte is
 *    Q_SLOW (pv_wait_head, pv_wait_again).
 *  - holding the lock (CS range, qspin_pass_head): if we are the last node
 *    clear the tail with the lock word's CAS; otherwise make the successor
 *    the head, and - pv, pv_kick_node - if it is halted, mark it hashed, set
 *    Q_SLOW and hash it, so our unlock kicks it (deferred), or kick it at
 *    once (immediate).
 * Release: native, store 0 to the locked byte. pv: CAS locked 1 -> 0; on
 * Q_SLOW unhash the waiter, release, and KICK it (pv_kick_unlock).
 *
 * No lost wakeup. Queued: (state = HALTED; full fence; read locked) against
 * the new head's (locked = 1; full fence; CAS state HALTED -> HASHED); either
 * we see locked and do not WAIT, or it sees HALTED and hashes us for its
 * unlock. Head: we hash ourselves before the full-fence swap to Q_SLOW; an
 * unlocker that sees Q_SLOW finds us in the hash and KICKs after releasing.
 * A KICK that arrives before we WAIT stays pending and makes the WAIT return
 * at once; every WAIT is followed by a re-check.
 *
 * Each ordering site below names the site it pairs with. The word is also
 * accessed as bytes and 16-bit halves (locked, pending, tail): mixed-size
 * atomics, which C11 does not model but x86 orders like same-size ones, as
 * Linux relies on.
 */
#include "lock.h"

#define Q_LOCKED 1u
#define Q_SLOW 3u
#define Q_PENDING (1u << 8)
#define Q_LOCKED_MASK 0xffu
#define Q_LOCKED_PENDING_MASK 0xffffu
#define Q_TAIL_SHIFT 16
#define Q_TAIL_MASK 0xffff0000u
/* Linux's pending-to-locked hand-over wait (_Q_PENDING_LOOPS is 1 on x86;
 * a few spins here, as a waiter that sees only pending set would otherwise
 * queue behind a hand-over about to complete). */
#define Q_PENDING_LOOPS 512

/* ---- the word ---------------------------------------------------------- */

LOCK_INLINE uint32_t *q_word(struct lhpvm_lock_slot *s)
{
	return lk_lo32(&s->word);
}

LOCK_INLINE uint8_t *q_locked(struct lhpvm_lock_slot *s)
{
	return (uint8_t *)q_word(s);
}

LOCK_INLINE uint8_t *q_pending(struct lhpvm_lock_slot *s)
{
	return (uint8_t *)q_word(s) + 1;
}

LOCK_INLINE uint16_t *q_locked_pending(struct lhpvm_lock_slot *s)
{
	return (uint16_t *)(void *)q_word(s);
}

LOCK_INLINE uint16_t *q_tail(struct lhpvm_lock_slot *s)
{
	return (uint16_t *)(void *)q_word(s) + 1;
}

LOCK_INLINE struct lock_qnode *q_node_of(struct lock_ctx *c, uint32_t tail)
{
	return (struct lock_qnode *)(void *)lock_vcpu_page(c, tail - 1)->scratch;
}

/* ---- the lock -> node hash (pv) ------------------------------------------ */

/* Linux hashes a lock to the node of its halted waiter in a table of 4 entries
 * per CPU; at most one entry per lock is in use at a time, so a table with
 * room for every lock slot twice over never fills. Shared by all vCPUs: it
 * is the image's .bss, in guest RAM every vCPU maps. */
#define PVQ_HASH_SIZE (2 * LHPVM_MAX_LOCKS)
_Static_assert((PVQ_HASH_SIZE & (PVQ_HASH_SIZE - 1)) == 0, "power of two");

struct pvq_hash_entry {
	uint64_t lock; /* slot address, 0: free */
	uint64_t node;
};
static struct pvq_hash_entry pvq_hash_table[PVQ_HASH_SIZE];

LOCK_INLINE uint32_t pvq_hash_index(struct lhpvm_lock_slot *s)
{
	/* Slots are 128 bytes apart: their index, mixed (Fibonacci hashing). */
	uint64_t k = (uint64_t)(uintptr_t)s / sizeof(struct lhpvm_lock_slot);

	return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 40) & (PVQ_HASH_SIZE - 1);
}

static GUEST_NOINLINE void pvq_hash(struct lock_ctx *c, struct lhpvm_lock_slot *s, struct lock_qnode *node)
{
	uint32_t i = pvq_hash_index(s);

	c->page->pv_hash_ops++;
	for (uint32_t hops = 1;; hops++, i = (i + 1) & (PVQ_HASH_SIZE - 1)) {
		struct pvq_hash_entry *e = &pvq_hash_table[i];

		/* Acquire matches the release of e->lock in pvq_unhash: the last
		 * user's read of e->node is done before we overwrite it. */
		if (lk_load(&e->lock) == 0 && lk_cas_acq(&e->lock, 0, (uint64_t)(uintptr_t)s)) {
			/* Published by the full fence (XCHG) that sets Q_SLOW next in
			 * pvq_wait_head_or_lock, matched by the acquire load of Q_SLOW
			 * in pvqspin_release. From qspin_pass_head, the unlocker that
			 * unhashes is this vCPU: program order suffices. */
			lk_store(&e->node, (uint64_t)(uintptr_t)node);
			c->page->pv_hash_hops += hops;
			return;
		}
		GUEST_ASSERT(hops < PVQ_HASH_SIZE);
	}
}

static GUEST_NOINLINE struct lock_qnode *pvq_unhash(struct lhpvm_lock_slot *s)
{
	uint32_t i = pvq_hash_index(s);

	for (uint32_t hops = 1;; hops++, i = (i + 1) & (PVQ_HASH_SIZE - 1)) {
		struct pvq_hash_entry *e = &pvq_hash_table[i];

		/* Not what makes e->node visible (pvq_hash's CAS has no release
		 * half): that is pvqspin_release's acquire load of Q_SLOW, or
		 * program order. Harmless: a plain MOV on x86. */
		if (lk_load_acq(&e->lock) == (uint64_t)(uintptr_t)s) {
			struct lock_qnode *node = (struct lock_qnode *)(uintptr_t)lk_load(&e->node);

			/* Matches the acquire CAS in pvq_hash: our read of e->node
			 * is done before the entry is reused. */
			lk_store_rel(&e->lock, 0);
			return node;
		}
		/* Q_SLOW is only set with an entry in the table. */
		GUEST_ASSERT(hops < PVQ_HASH_SIZE);
	}
}

/* ---- trylocks -------------------------------------------------------------- */

/* Native: the whole word must be 0 (no queue to jump). In both trylocks the
 * relaxed load is only a test; the CAS's acquire matches the release of the
 * locked byte in qspin_release / pvqspin_release. */
LOCK_INLINE int q_trylock(struct lhpvm_lock_slot *s)
{
	return lk_load(q_word(s)) == 0 && lk_cas_acq(q_word(s), 0, Q_LOCKED);
}

/* pv: take a free lock out of queue order (the knob says how hard). */
LOCK_INLINE int pvq_steal(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	switch (c->pv_steal) {
	case LHPVM_PV_STEAL_OFF:
		return q_trylock(s);
	case LHPVM_PV_STEAL_ONCE: /* one look: free and no pending, whatever the queue */
		if (!(lk_load(q_word(s)) & Q_LOCKED_PENDING_MASK) && lk_cas_acq(q_locked(s), 0, Q_LOCKED)) {
			c->page->pv_lock_stealing++;
			return 1;
		}
		return 0;
	default: /* hybrid: while there is a queue and nobody holds pending */
		for (;;) {
			uint32_t v = lk_load(q_word(s));

			if (!(v & Q_LOCKED_PENDING_MASK) && lk_cas_acq(q_locked(s), 0, Q_LOCKED)) {
				c->page->pv_lock_stealing++;
				return 1;
			}
			if (!(v & Q_TAIL_MASK) || (v & Q_PENDING))
				return 0;
			cpu_relax();
		}
	}
}

/* ---- pv waiting -------------------------------------------------------------- */

/* Is the predecessor not running (the pv_wait_early check)? Relaxed: a
 * stale answer only makes us halt sooner or later. */
LOCK_INLINE int pvq_prev_not_running(struct lock_ctx *c, struct lock_qnode *prev)
{
	if (c->pv_prev_check == LHPVM_PV_PREV_CHECK_PREEMPTED)
		return lock_vcpu_preempted(c, lk_load(&prev->cpu));
	return lk_load(&prev->state) != QNODE_RUNNING;
}

/* Queued behind prev: returns once prev has made us the head. */
LOCK_INLINE void pvq_wait_node(struct lock_ctx *c, struct lock_qnode *me, struct lock_qnode *prev)
{
	for (;;) {
		int early = 0;

		for (uint64_t loop = c->spin_threshold; loop; loop--) {
			/* Matches the store of next->locked in qspin_pass_head: we
			 * are the head only after our predecessor's hand-over. */
			if (lk_load_acq(&me->locked))
				return;
			if (c->pv_prev_check != LHPVM_PV_PREV_CHECK_OFF && (loop & LOCK_PV_PREV_CHECK_MASK) == 0 &&
			    pvq_prev_not_running(c, prev)) {
				early = 1;
				break;
			}
			cpu_relax();
		}
		lock_set_state(c, LHPVM_LOCK_STATE_SLOW);
		/* smp_store_mb: XCHG, a store and a full fence. Matches the
		 * (store locked = 1; CAS state) of qspin_pass_head:
		 *   [S] state = HALTED         [S] next->locked = 1
		 *       MB                         MB
		 *   [L] locked                 [RmW] next->state HALTED -> ...
		 * either we see locked = 1 and do not WAIT, or it sees HALTED
		 * and kicks us (now, or from its unlock via the hash). */
		__atomic_exchange_n(&me->state, QNODE_HALTED, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&me->locked, __ATOMIC_SEQ_CST)) {
			c->page->pv_wait_node++;
			c->page->pv_wait_early += early;
			c->page->slow_paths++;
			/* Returns at once if qspin_pass_head's CAS already moved
			 * state off HALTED, or a KICK is pending. */
			lock_wait(c, &me->state, QNODE_HALTED);
		}
		/* Keep HASHED: then the new holder's unlock kicks us.
		 * Races qspin_pass_head's CAS of our state: the RMWs' atomicity
		 * decides who moves HALTED; no other ordering is needed. */
		lk_cas_full(&me->state, QNODE_HALTED, QNODE_RUNNING);
		lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
		/* Only for the count: the loop's load above decides. */
		if (!lk_load_acq(&me->locked))
			c->page->pv_spurious_wakeup++;
	}
}

/* The queue head: returns holding the lock (its locked byte 1 or Q_SLOW). */
LOCK_INLINE void pvq_wait_head_or_lock(struct lock_ctx *c, struct lhpvm_lock_slot *s, struct lock_qnode *me)
{
	/* pv_kick_node may have hashed us already (deferred kick). Relaxed:
	 * our own node; we read qspin_pass_head's CAS result in pvq_wait_node
	 * (our CAS of state there), and only we write state from now on. */
	int hashed = lk_load(&me->state) == QNODE_HASHED;

	for (uint64_t waits = 0;; waits++) {
		/* Relaxed: for our successor's pvq_prev_not_running, a hint. */
		lk_store(&me->state, QNODE_RUNNING);
		/* Relaxed (Linux's set_pending): only turns pvq_steal away. */
		if (c->pv_pending == LHPVM_PV_PENDING_ON)
			__atomic_store_n(q_pending(s), 1, __ATOMIC_RELAXED); /* no stealing meanwhile */
		for (uint64_t loop = c->spin_threshold_head; loop; loop--) {
			/* trylock_clear_pending: locked clear -> take it and drop pending.
			 * Relaxed test; the CASes' acquire matches the release of the
			 * locked byte in pvqspin_release. */
			uint32_t v = lk_load(q_word(s));

			if (!(v & Q_LOCKED_MASK)) {
				if (c->pv_pending == LHPVM_PV_PENDING_ON) {
					if (lk_cas_acq(q_locked_pending(s), (uint16_t)Q_PENDING, (uint16_t)Q_LOCKED))
						return;
				} else if (lk_cas_acq(q_locked(s), 0, Q_LOCKED)) {
					return;
				}
			}
			cpu_relax();
		}
		if (c->pv_pending == LHPVM_PV_PENDING_ON)
			__atomic_store_n(q_pending(s), 0, __ATOMIC_RELAXED);
		lock_set_state(c, LHPVM_LOCK_STATE_SLOW);
		if (!hashed) {
			pvq_hash(c, s, me);
			hashed = 1;
			/* Full fence: pvq_hash's entry is visible before Q_SLOW.
			 * Matches the acquire load of Q_SLOW in pvqspin_release,
			 * which then finds the entry in pvq_unhash:
			 *   [S] <hash>                 [L] locked == Q_SLOW (acquire)
			 *       MB
			 *   [RmW] locked = Q_SLOW      [L] <unhash>
			 * If it returns 0 the lock was free and this XCHG is our
			 * acquire (matching pvqspin_release's release of the byte). */
			if (__atomic_exchange_n(q_locked(s), (uint8_t)Q_SLOW, __ATOMIC_SEQ_CST) == 0) {
				/* It was free: ours. Back to plain locked, unhashed.
				 * Relaxed: we hold the lock; only our own release reads
				 * the byte next, and our own entry goes (program order). */
				__atomic_store_n(q_locked(s), (uint8_t)Q_LOCKED, __ATOMIC_RELAXED);
				pvq_unhash(s);
				lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
				return;
			}
		}
		lk_store(&me->state, QNODE_HASHED); /* relaxed: a hint, as RUNNING above */
		c->page->pv_wait_head++;
		c->page->pv_wait_again += waits != 0;
		c->page->slow_paths++;
		/* WAIT on the word while its locked byte is Q_SLOW. Relaxed: WAIT
		 * blocks only while the word is still v and no KICK is pending,
		 * and pvqspin_release stores the byte before it KICKs; the
		 * acquire is the trylock CAS when we loop back. */
		for (;;) {
			uint32_t v = lk_load(q_word(s));

			if ((v & Q_LOCKED_MASK) != Q_SLOW || lock_wait(c, q_word(s), v) != LHPVM_WAIT_VALUE_CHANGE)
				break;
		}
		lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
		/* As Linux: we hash ourselves once. If the lock was stolen after
		 * our kick, the next WAIT returns at once (the byte is no longer
		 * Q_SLOW) and the head spins, with pending set against stealers. */
	}
}

/* ---- the slow path ---------------------------------------------------------- */

/*
 * In the CS range: we hold the lock, as the queue head. Clear the tail if we
 * are the last node (the word's CAS also leaves locked = 1: Q_SLOW of our own
 * head wait is dropped), else set locked and make the successor the head.
 */
static GUEST_CS_TEXT void qspin_pass_head(struct lock_ctx *c, struct lhpvm_lock_slot *s,
					  struct lock_qnode *me, uint32_t tail, int pv)
{
	/* Relaxed: the lock's acquire is behind us (the head wait's
	 * lk_load_acq in qspin_slowpath, or pvq_wait_head_or_lock's CAS). */
	uint32_t v = lk_load(q_word(s));
	uint64_t n;
	struct lock_qnode *next;

	/* Ours now: say so before a KICK below can cost us our pCPU (the host
	 * times a lock held by a vCPU that does not run from this). */
	lock_grant(s, c->id);
	/* The CAS's atomicity against a new queuer's tail XCHG in
	 * qspin_slowpath is what matters (it fails if one came); its acquire
	 * orders nothing new. Pending must be clear in v, as in Linux (whose
	 * v is the head wait's): a native locker that set pending, saw our
	 * tail and is about to undo it (qspin_slowpath) must make the CAS
	 * fail and queue behind us. Were its pending swallowed here, its undo
	 * would later clear a pending bit another locker owns, and two
	 * lockers could take the lock. pv never has pending set here. */
	if ((v & ~Q_LOCKED_MASK) == tail && lk_cas_acq(q_word(s), v, Q_LOCKED))
		return;
	/* set_locked. Relaxed: native, no one else sets the locked byte while
	 * the tail is ours and pending is clear (the fast path needs a zero
	 * word, the pending path no tail); pv, the byte is already ours. */
	__atomic_store_n(q_locked(s), (uint8_t)Q_LOCKED, __ATOMIC_RELAXED);
	/* Matches the release store to prev->next in qspin_slowpath: the
	 * successor's node (locked = 0, state, cpu) is initialised before we
	 * write into it below. */
	while (!(n = lk_load_acq(&me->next)))
		cpu_relax(); /* it swapped the tail and has not linked in yet */
	next = (struct lock_qnode *)(uintptr_t)n;
	/* Hands the queue head over: matches lk_load_acq(&me->locked) in
	 * qspin_slowpath and pvq_wait_node. Native only needs a release
	 * (Linux's arch_mcs_spin_unlock_contended); pv needs the full fence
	 * before the CAS of next->state below (smp_mb__before_atomic), the
	 * other half of pvq_wait_node's XCHG-state-then-load-locked. */
	__atomic_store_n(&next->locked, 1, __ATOMIC_SEQ_CST);
	if (!pv)
		return;
	/* pv_kick_node. Both CASes match pvq_wait_node's XCHG of state to
	 * HALTED and its CAS HALTED -> RUNNING: one RMW wins HALTED. */
	if (c->pv_kick == LHPVM_PV_KICK_IMMEDIATE) {
		if (lk_cas_full(&next->state, QNODE_HALTED, QNODE_RUNNING))
			lock_kick(c, lk_load(&next->cpu));
		return;
	}
	if (!lk_cas_full(&next->state, QNODE_HALTED, QNODE_HASHED))
		return;
	/* Relaxed, and set before hashing: we hold the lock, and the vCPU that
	 * sees Q_SLOW and unhashes is this one, in pvqspin_release (program
	 * order). Others only see the lock held. */
	__atomic_store_n(q_locked(s), (uint8_t)Q_SLOW, __ATOMIC_RELAXED);
	pvq_hash(c, s, next);
}

LOCK_INLINE void qspin_slowpath(struct lock_ctx *c, struct lhpvm_lock_slot *s, int pv)
{
	struct lock_qnode *me, *prev;
	uint32_t v, tail, old;

	if (!pv) {
		/* Relaxed loads: tests only; the fetch_or below decides. */
		v = lk_load(q_word(s));
		for (int i = 0; v == Q_PENDING && i < Q_PENDING_LOOPS; i++) {
			cpu_relax();
			v = lk_load(q_word(s));
		}
		if (!(v & ~Q_LOCKED_MASK)) {
			/* Acquire as Linux's fetch_set_pending_acquire; the load
			 * of locked below re-acquires before we take the lock. */
			v = __atomic_fetch_or(q_word(s), Q_PENDING, __ATOMIC_ACQUIRE);
			if (!(v & ~Q_LOCKED_MASK)) {
				/* Pending is ours: wait for the holder, then take it.
				 * Matches the release store of the locked byte in
				 * qspin_release: its CS happens before ours. */
				while (lk_load_acq(q_locked(s)))
					cpu_relax();
				/* clear_pending_set_locked. Relaxed: the acquire was the
				 * load above; while pending is ours no one else may set
				 * the locked byte (the fast path needs a zero word, the
				 * queue head waits for pending to clear). */
				__atomic_store_n(q_locked_pending(s), (uint16_t)Q_LOCKED, __ATOMIC_RELAXED);
				c->page->lock_pending++;
				return;
			}
			/* Relaxed (Linux's clear_pending): orders nothing; we queue. */
			if (!(v & Q_PENDING)) /* we set it but someone queued: undo */
				__atomic_fetch_and(q_word(s), ~Q_PENDING, __ATOMIC_RELAXED);
		}
	}

	c->page->lock_slowpath++;
	me = lock_my_qnode(c);
	/* Relaxed: published by the tail XCHG's release half (to a successor
	 * that finds us in the tail) and by the release store to prev->next
	 * (to our predecessor). */
	lk_store(&me->next, 0);
	lk_store(&me->locked, 0);
	lk_store(&me->state, QNODE_RUNNING);
	lk_store(&me->cpu, c->id);
	if (pv ? pvq_steal(c, s) : q_trylock(s))
		return;

	tail = (c->id + 1) << Q_TAIL_SHIFT;
	/* xchg_tail: publishes our node, acquires the predecessor's. Matches
	 * the same XCHG of our successor (release: our node's initialisation)
	 * and of our predecessor (acquire: its next = 0 is before our store
	 * to prev->next below). Linux: smp_wmb() and a relaxed xchg. */
	old = (uint32_t)__atomic_exchange_n(q_tail(s), (uint16_t)(tail >> Q_TAIL_SHIFT), __ATOMIC_ACQ_REL)
	      << Q_TAIL_SHIFT;
	if (old) {
		prev = q_node_of(c, old >> Q_TAIL_SHIFT);
		/* Matches lk_load_acq(&me->next) in qspin_pass_head. */
		lk_store_rel(&prev->next, (uint64_t)(uintptr_t)me);
		if (pv) {
			pvq_wait_node(c, me, prev);
		} else {
			/* Matches the store of next->locked in qspin_pass_head. */
			while (!lk_load_acq(&me->locked))
				cpu_relax();
		}
	}
	if (pv) {
		pvq_wait_head_or_lock(c, s, me);
	} else {
		/* The head's acquire of the lock: matches the release store of
		 * the locked byte in qspin_release (last holder's CS first). */
		while (lk_load_acq(q_word(s)) & Q_LOCKED_PENDING_MASK)
			cpu_relax();
	}
	qspin_pass_head(c, s, me, tail, pv);
}

/* Fast paths: the CAS's acquire matches the release of the locked byte in
 * qspin_release / pvqspin_release. */
static GUEST_SPIN_TEXT void qspin_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	if (!lk_cas_acq(q_word(s), 0, Q_LOCKED))
		qspin_slowpath(c, s, 0);
}

static GUEST_SPIN_TEXT void pvqspin_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	if (!lk_cas_acq(q_word(s), 0, Q_LOCKED))
		qspin_slowpath(c, s, 1);
}

static GUEST_CS_TEXT void qspin_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Matches the acquire of the lock: the CAS in qspin_acquire and
	 * q_trylock, and qspin_slowpath's loads of the locked byte (pending
	 * owner) and of the word (queue head). */
	__atomic_store_n(q_locked(s), 0, __ATOMIC_RELEASE);
}

/* Outside the CS range: the lock is already free when this runs. The KICK's
 * doorbell store follows pvqspin_release's store of the byte; node->cpu is
 * fixed since the node's initialisation (relaxed). */
static GUEST_NOINLINE void pvqspin_unlock_kick(struct lock_ctx *c, struct lock_qnode *node)
{
	c->page->pv_kick_unlock++;
	lock_kick(c, lk_load(&node->cpu));
}

static GUEST_CS_TEXT void pvqspin_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	struct lock_qnode *node;

	/* Release matches the acquire CASes in pvqspin_acquire, pvq_steal and
	 * pvq_wait_head_or_lock (and its Q_SLOW XCHG when it finds 0). */
	if (lk_cas_rel(q_locked(s), (uint8_t)Q_LOCKED, 0))
		return;
	/* Q_SLOW: a halted waiter is hashed; find it before the release.
	 * A failed CAS orders nothing: this acquire load (Linux's smp_rmb)
	 * matches the Q_SLOW XCHG in pvq_wait_head_or_lock, so pvq_unhash
	 * sees its entry. It is inside GUEST_ASSERT: keep it if that goes. */
	GUEST_ASSERT(lk_load_acq(q_locked(s)) == Q_SLOW);
	node = pvq_unhash(s);
	/* Release, as above; after our read of the node (pvq_unhash), so the
	 * entry is consumed before a new holder can hash another waiter. */
	__atomic_store_n(q_locked(s), 0, __ATOMIC_RELEASE);
	pvqspin_unlock_kick(c, node);
}

const struct lock_impl lock_qspin = {
	.name = "qspinlock", .kind = LHPVM_LOCK_Q_SPIN,
	.acquire = qspin_acquire, .release = qspin_release,
};

const struct lock_impl lock_pvqspin = {
	.name = "pvqspin", .kind = LHPVM_LOCK_PVQ_SPIN,
	.acquire = pvqspin_acquire, .release = pvqspin_release,
};
