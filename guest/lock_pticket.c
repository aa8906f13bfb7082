/*
 * lock_pticket.c - preemptable ticket lock (after Ouyang & Lange,
 * "Preemptable ticket spinlocks: improving consolidated performance in the
 * cloud", VEE'13).
 *
 * What is implemented: a ticket lock whose tickets only order the waiters,
 * plus a separate lock word that is what actually grants the lock.
 *  - Acquire takes a ticket t (LOCK XADD on request) and waits in FIFO
 *    order: while t is ahead of grant (the ticket now served), spin. Each
 *    waiter has a timeout proportional to its distance from the head,
 *    (t - grant) << p_ticket_shift spins (the paper's TIMEOUT_UNIT is
 *    1 << 14, the default), restarted whenever grant moves (i.e. measured
 *    from the last progress of the queue).
 *  - When its turn comes (grant reaches or passes t), or when the timeout
 *    expires because the queue is stuck - typically behind a preempted
 *    vCPU whose turn it is - the waiter stops honouring FIFO and competes
 *    for the lock word with test-and-test-and-set (CAS 0 -> id + 1). So a
 *    preempted next-in-line no longer stalls everybody: a timed-out waiter
 *    takes the free lock, and the queue keeps moving.
 *  - Release advances grant by one and frees the lock word. grant counts
 *    completed acquisitions, so after an out-of-order acquisition the
 *    skipped (preempted) waiter finds grant past its ticket when it runs
 *    again and competes at once.
 * Every timeout (or preempted-aware early exit) counts as a slow path.
 *
 * Slot: low 32 bits of word = grant, low 32 bits of word2 = request,
 * spare[0] low 32 bits = lock word: 0 free / holder vCPU id + 1.
 * Preempted-aware: every 16 spins, if the vCPU whose turn it is (ticket ==
 * grant) is preempted, stop waiting in line at once; while competing, YIELD
 * to a preempted holder.
 */
#include "lock.h"

LOCK_INLINE uint32_t *pt_lock(struct lhpvm_lock_slot *s)
{
	return lk_lo32(lock_spare(s, 0));
}

static GUEST_SPIN_TEXT void pticket_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *grant = lk_lo32(&s->word), *request = lk_lo32(&s->word2), *lk = pt_lock(s);
	/* Relaxed: tickets only order the waiters; the lock word's CAS below and
	 * the release store in pticket_release order the CS. */
	uint32_t t = __atomic_fetch_add(request, 1, __ATOMIC_RELAXED);
	uint32_t me = c->id + 1, g, last = t, spins32 = 0;
	uint64_t spins = 0, timeout = 0;

	lock_publish_ticket(c, t);

	/* In line: until our turn, or the queue stops moving for our timeout.
	 * Relaxed: grant is only our place in line (nothing is read under it);
	 * a stale value delays our turn or restarts the timeout, nothing more. */
	while ((int32_t)(t - (g = lk_load(grant))) > 0) {
		if (g != last) {
			/* The queue moved (or first look): restart our timeout. */
			uint64_t d = (uint32_t)(t - g);

			last = g;
			spins = 0;
			/* d < 2^32 and the shift <= 30: no overflow. */
			timeout = d << c->p_ticket_shift;
		}
		if (spins >= timeout ||
		    (lock_aware(c) && (spins & LOCK_PREEMPT_CHECK_MASK) == LOCK_PREEMPT_CHECK_MASK &&
		     lock_vcpu_preempted(c, lock_ticket_vcpu(c, g)))) {
			c->page->slow_paths++;
			break;
		}
		spins++;
		cpu_relax();
	}

	/* Compete for the lock word. */
	for (;;) {
		uint32_t w = lk_load(lk);

		/* Matches lk_store_rel(pt_lock) in pticket_release: the previous
		 * holder's CS, and its store to grant, happen before ours. */
		if (w == 0 && lk_cas_acq(lk, 0, me))
			return;
		cpu_relax();
		if (lock_aware(c) && w != 0 && (++spins32 & LOCK_PREEMPT_CHECK_MASK) == 0)
			lock_yield_if_preempted(c, w - 1);
	}
}

static GUEST_CS_TEXT void pticket_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *grant = lk_lo32(&s->word);

	/* Relaxed: the last store to grant was the previous holder's, made
	 * visible to us by our CAS on the lock word (see pticket_acquire). */
	uint32_t next = lk_load(grant) + 1;

	/* Granted to the next ticket's vCPU, though a timed-out waiter may
	 * still take it first (then lockbench.c re-grants it to that one). */
	lock_hand_to(s, lock_ticket_vcpu(c, next));
	/* Only the holder writes grant. Relaxed: the release store below
	 * publishes it to the next holder; waiters in line read it as a hint. */
	lk_store(grant, next);
	/* Matches lk_cas_acq(lk) in pticket_acquire: our CS, grant and the
	 * granted store are visible to whoever takes the lock word next. */
	lk_store_rel(pt_lock(s), 0);
}

const struct lock_impl lock_pticket = {
	.name = "pticket", .kind = LHPVM_LOCK_P_TICKET,
	.acquire = pticket_acquire, .release = pticket_release,
};
