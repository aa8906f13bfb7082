/*
 * lock_mcs.c - MCS queue lock (Mellor-Crummey & Scott 1991): XCHG our node
 * into the tail; with a predecessor, link in behind it and spin on our own
 * node's `locked` (a local line: no bouncing); release hands the lock to the
 * successor by setting its `locked`, or swings the tail back to 0 when there
 * is none. FIFO, like the ticket lock.
 *
 * Slot: word = tail (node address, 0 = free). Node: in this vCPU's page
 * scratch (struct lock_qnode).
 * Preempted-aware: every 16 spins, YIELD to the holder (slot->owner - 1) if
 * it is preempted, else to our predecessor if it is.
 */
#include "lock.h"

static GUEST_SPIN_TEXT void mcs_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	struct lock_qnode *me = lock_my_qnode(c), *prev;
	uint32_t spins = 0;

	/* Relaxed: published by the XCHG below (to a successor that finds us
	 * in the tail) and by the release store to prev->next (to prev). */
	lk_store(&me->next, 0);
	lk_store(&me->locked, 0);
	lk_store(&me->cpu, c->id);
	/* acq_rel: publishes the node's initialisation to whoever follows us
	 * (matches its own XCHG here), and acquires the previous holder's
	 * release when the queue was empty (matches the CAS in mcs_release). */
	prev = (struct lock_qnode *)(uintptr_t)__atomic_exchange_n(&s->word, (uint64_t)(uintptr_t)me,
								    __ATOMIC_ACQ_REL);
	if (!prev)
		return;
	/* Matches lk_load_acq(&me->next) in mcs_release: our locked = 0 above
	 * is visible to prev before it stores locked = 1, so it is not undone. */
	lk_store_rel(&prev->next, (uint64_t)(uintptr_t)me);
	/* Matches the release store of next->locked in mcs_release: the
	 * previous holder's CS happens before ours. */
	while (!lk_load_acq(&me->locked)) {
		cpu_relax();
		if (lock_aware(c) && (++spins & LOCK_PREEMPT_CHECK_MASK) == 0 &&
		    !lock_yield_if_preempted(c, lock_owner_vcpu(s)))
			lock_yield_if_preempted(c, lk_load(&prev->cpu)); /* a hint */
	}
}

/*
 * In the CS range: until the successor's `locked` is set we still hold the
 * lock, including while we wait for a successor that has swung the tail but
 * not linked itself in yet.
 */
static GUEST_CS_TEXT void mcs_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	struct lock_qnode *me = lock_my_qnode(c);
	/* Matches the release store to prev->next in mcs_acquire: the
	 * successor's node (locked = 0, cpu) is initialised before we use it. */
	uint64_t next = lk_load_acq(&me->next);

	if (!next) {
		/* Release: matches the XCHG of the tail in mcs_acquire of the next
		 * vCPU to find it 0 (our CS before its). The acquire half orders
		 * nothing we need: on failure the load below acquires. */
		if (lk_cas_acq_rel(&s->word, (uint64_t)(uintptr_t)me, 0))
			return;
		/* As above: matches the release store to prev->next. */
		while (!(next = lk_load_acq(&me->next)))
			cpu_relax();
	}
	lock_hand_to(s, lk_load(&((struct lock_qnode *)(uintptr_t)next)->cpu));
	/* Matches lk_load_acq(&me->locked) in mcs_acquire: our CS and the
	 * granted store above happen before the successor's CS. */
	lk_store_rel(&((struct lock_qnode *)(uintptr_t)next)->locked, 1);
}

const struct lock_impl lock_mcs = {
	.name = "mcs", .kind = LHPVM_LOCK_MCS,
	.acquire = mcs_acquire, .release = mcs_release,
};
