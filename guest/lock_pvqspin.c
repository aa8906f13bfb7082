/*
 * lock_pvqspin.c - MCS-style queued spinlock with the paravirtual slow paths
 * of Linux's pv qspinlock (kernel/locking/qspinlock_paravirt.h; our own
 * code, same semantics, simplified: the queue tail is a separate word holding
 * a node address, there is no pending bit, and instead of hashing lock -> node
 * the halted queue head's vCPU is recorded in a spare slot word).
 *
 * Slot: low 32 bits of word = 0 free / 1 locked / 3 locked and the queue
 * head is halted (PVQ_SLOW, _Q_SLOW_VAL); word2 = queue tail (node address,
 * 0 = no queue); spare[0] low 32 bits = vCPU id + 1 the unlocker must KICK.
 * Node: this vCPU's page scratch (struct lock_qnode).
 *
 * Acquire: CAS 0 -> 1 when nobody is queued (fast path). Otherwise XCHG our
 * node into the tail and link in behind the predecessor, then:
 *  - queued (pv_wait_node): spin on our node's `locked` up to spin_threshold
 *    times, checking every 256 spins whether the predecessor's vCPU is
 *    preempted (its page->preempted) or not running (its node state is not
 *    RUNNING: halted, or waiting as queue head) - if so, stop spinning
 *    early. Then state = HALTED (XCHG: a full fence), re-check `locked`,
 *    and WAIT on our node's state while it is HALTED. Whatever wakes us, CAS
 *    HALTED -> RUNNING (keeping HASHED) and loop until `locked`.
 *  - queue head (pv_wait_head_or_lock): spin up to spin_threshold times
 *    trying CAS 0 -> 1 on the lock word; then mark our node HASHED (for our
 *    successor's early-wait check), record our vCPU in spare[0] ("hash")
 *    and XCHG the word to PVQ_SLOW. If the old value was 0 the lock was free
 *    and is ours (set it back to 1); otherwise WAIT on the word while it is
 *    PVQ_SLOW, and start over (the lock may be stolen by a fast path).
 *  - having the lock, hand the queue head over (pvqspin_pass_head, CS range):
 *    if we are the last node, swing the tail to 0; else set the successor's
 *    `locked` (full fence) and if its state is HALTED, CAS it to HASHED,
 *    record it in spare[0] and set the word to PVQ_SLOW (Linux pv_kick_node):
 *    we hold the lock, so a KICK now would only let it spin; our unlock will
 *    kick it - the predecessor kicks its halted successor, at unlock time.
 * Release: CAS 1 -> 0. If the word was PVQ_SLOW, read spare[0], store 0, and
 * KICK that vCPU (outside the CS range).
 *
 * No lost wakeup. Queued: a Dekker pair with a full fence on each side,
 * (state = HALTED; read locked) against (locked = 1; CAS state): either we
 * see `locked` and do not WAIT, or the predecessor sees HALTED and hashes us
 * for its unlock's KICK. Head: the lock word's RMW order decides - if the
 * unlocker's CAS 1 -> 0 comes first our XCHG returns 0 and the lock is ours;
 * if our XCHG comes first the CAS fails and the unlocker reads spare[0]
 * (written before the XCHG) and KICKs us. A KICK that arrives after we
 * stopped waiting stays pending and makes a later WAIT return at once:
 * every WAIT loop re-checks.
 *
 * Preempted-aware: queued waiters check their predecessor every 16 spins
 * instead of 256; the queue head goes to WAIT at once when the holder
 * (slot->owner - 1) is preempted.
 */
#include "lock.h"

#define PVQ_FREE 0u
#define PVQ_LOCKED 1u
#define PVQ_SLOW 3u

LOCK_INLINE uint32_t *pvq_waiter(struct lhpvm_lock_slot *s)
{
	return lk_lo32(lock_spare(s, 0));
}

/* Queued: returns once the predecessor has made us the queue head. */
LOCK_INLINE void pvq_wait_node(struct lock_ctx *c, struct lock_qnode *me, struct lock_qnode *prev)
{
	uint32_t mask = lock_aware(c) ? LOCK_PREEMPT_CHECK_MASK : LOCK_PV_PREV_CHECK_MASK;

	for (;;) {
		for (uint64_t spins = 0; spins < c->spin_threshold; spins++) {
			if (lk_load_acq(&me->locked))
				return;
			if ((spins & mask) == mask &&
			    (lock_vcpu_preempted(c, lk_load(&prev->cpu)) ||
			     lk_load(&prev->state) != QNODE_RUNNING))
				break; /* wait early: the predecessor is not running */
			cpu_relax();
		}
		c->page->slow_paths++;
		lock_set_state(c, LHPVM_LOCK_STATE_SLOW);
		__atomic_exchange_n(&me->state, QNODE_HALTED, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&me->locked, __ATOMIC_SEQ_CST))
			lock_wait(c, &me->state, QNODE_HALTED);
		/* Keep HASHED: then our predecessor's unlock will kick us. */
		lk_cas_full(&me->state, QNODE_HALTED, QNODE_RUNNING);
		lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
	}
}

/* Queue head: returns holding the lock. */
LOCK_INLINE void pvq_wait_head_or_lock(struct lock_ctx *c, struct lhpvm_lock_slot *s,
					struct lock_qnode *me)
{
	uint32_t *word = lk_lo32(&s->word);

	for (;;) {
		/* Our node's state tells our successor whether we run. */
		lk_store(&me->state, QNODE_RUNNING);
		for (uint64_t spins = 0; spins < c->spin_threshold; spins++) {
			if (lk_load(word) == PVQ_FREE && lk_cas_acq(word, PVQ_FREE, PVQ_LOCKED))
				return;
			if (lock_aware(c) && (spins & LOCK_PREEMPT_CHECK_MASK) == LOCK_PREEMPT_CHECK_MASK &&
			    lock_vcpu_preempted(c, lock_owner_vcpu(s)))
				break;
			cpu_relax();
		}
		c->page->slow_paths++;
		lock_set_state(c, LHPVM_LOCK_STATE_SLOW);
		lk_store(&me->state, QNODE_HASHED);
		lk_store(pvq_waiter(s), c->id + 1);
		if (__atomic_exchange_n(word, PVQ_SLOW, __ATOMIC_SEQ_CST) == PVQ_FREE) {
			/* It was free: ours now. No one else may see SLOW from us. */
			lk_store(word, PVQ_LOCKED);
			lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
			return;
		}
		lock_wait(c, word, PVQ_SLOW);
		lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
	}
}

/*
 * In the CS range: we hold the lock. Make the successor the queue head, or
 * empty the queue. Waiting for a successor that has swung the tail but not
 * linked in yet happens here, holding the lock, as in Linux.
 */
static GUEST_CS_TEXT void pvqspin_pass_head(struct lock_ctx *c, struct lhpvm_lock_slot *s,
					    struct lock_qnode *me)
{
	struct lock_qnode *next;
	uint64_t n = lk_load_acq(&me->next);

	(void)c;
	if (!n) {
		if (lk_cas_acq_rel(&s->word2, (uint64_t)(uintptr_t)me, 0))
			return;
		while (!(n = lk_load_acq(&me->next)))
			cpu_relax();
	}
	next = (struct lock_qnode *)(uintptr_t)n;
	/* seq_cst store then seq_cst CAS: `locked` is visible before we look at
	 * the state (the other half of the waiter's HALTED / re-check). */
	__atomic_store_n(&next->locked, 1, __ATOMIC_SEQ_CST);
	if (lk_cas_full(&next->state, QNODE_HALTED, QNODE_HASHED)) {
		lk_store(pvq_waiter(s), lk_load(&next->cpu) + 1);
		lk_store_rel(lk_lo32(&s->word), PVQ_SLOW);
	}
}

static GUEST_SPIN_TEXT void pvqspin_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *word = lk_lo32(&s->word);
	struct lock_qnode *me, *prev;

	if (lk_load(&s->word2) == 0 && lk_load(word) == PVQ_FREE &&
	    lk_cas_acq(word, PVQ_FREE, PVQ_LOCKED))
		return;

	me = lock_my_qnode(c);
	lk_store(&me->next, 0);
	lk_store(&me->locked, 0);
	lk_store(&me->state, QNODE_RUNNING);
	lk_store(&me->cpu, c->id);
	prev = (struct lock_qnode *)(uintptr_t)__atomic_exchange_n(&s->word2, (uint64_t)(uintptr_t)me,
								    __ATOMIC_ACQ_REL);
	if (prev) {
		lk_store_rel(&prev->next, (uint64_t)(uintptr_t)me);
		pvq_wait_node(c, me, prev);
	}
	pvq_wait_head_or_lock(c, s, me);
	pvqspin_pass_head(c, s, me);
}

/* Outside the CS range: the lock is already free when this runs. */
static GUEST_NOINLINE void pvqspin_unlock_kick(struct lock_ctx *c, uint32_t waiter)
{
	GUEST_ASSERT(waiter != 0);
	lock_kick(c, waiter - 1);
}

static GUEST_CS_TEXT void pvqspin_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *word = lk_lo32(&s->word);
	uint32_t waiter;

	if (lk_cas_rel(word, PVQ_LOCKED, PVQ_FREE))
		return;
	/* PVQ_SLOW: a halted queue head is recorded; read it before the release. */
	GUEST_ASSERT(lk_load_acq(word) == PVQ_SLOW);
	waiter = lk_load(pvq_waiter(s));
	lk_store_rel(word, PVQ_FREE);
	pvqspin_unlock_kick(c, waiter);
}

const struct lock_impl lock_pvqspin = {
	.name = "pvqspin", .kind = LHPVM_LOCK_PVQ_SPIN,
	.acquire = pvqspin_acquire, .release = pvqspin_release,
};
