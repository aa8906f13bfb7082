/*
 * lock_pvticket.c - ticket lock with the paravirtual slow path (the Linux/KVM
 * pv-ticketlock design, 2013: spin SPIN_THRESHOLD, then halt until kicked by
 * the releaser of the ticket before ours).
 *
 * Slot: low 32 bits of word = head (ticket now served), low 32 bits of
 * word2 = tail (next ticket), spare[0] low 32 bits = slow-waiter count (the
 * "lock has slow waiters" mark; a count needs no clearing heuristics).
 *
 * Waiter: take a ticket (published in page->ticket), spin until head ==
 * ticket for spin_threshold spins, then the slow path: publish
 * lock_state = SLOW in our page (lock_id and ticket are there already),
 * LOCK XADD the slow count (a full fence), re-read the head, and WAIT on the
 * head word while it holds the value just read. Any return re-reads the head
 * and WAITs again until it is our ticket.
 * Releaser: advance the head with XCHG (a full fence), then read the slow
 * count; if non-zero, scan the vCPU pages (outside the CS range) for the one
 * in SLOW state waiting for the new head on this lock, and KICK it.
 *
 * No lost wakeup (Dekker on head/slow-count): either the releaser's read of
 * the count sees our increment - and then, through the count's release
 * sequence, also our page - and it kicks us (a KICK to a vCPU not yet in
 * WAIT stays pending), or our re-read of the head, ordered after our
 * increment, sees the new head and we do not WAIT.
 *
 * Preempted-aware: every 16 spins, if the vCPU we wait for (the holder,
 * slot->owner - 1, or the vCPU whose ticket is the head) is preempted, go to
 * the slow path at once.
 */
#include "lock.h"

LOCK_INLINE uint32_t *pvt_slow(struct lhpvm_lock_slot *s)
{
	return lk_lo32(lock_spare(s, 0));
}

/* Waits in WAIT until the head is t. Counted as one slow path. */
LOCK_INLINE void pvticket_slow(struct lock_ctx *c, uint32_t *head, uint32_t *slow, uint32_t t)
{
	uint32_t h;

	c->page->slow_paths++;
	lock_set_state(c, LHPVM_LOCK_STATE_SLOW);
	/* LOCK XADD, a full fence. Matches the seq_cst load of the count in
	 * pvticket_release: releases our SLOW state and published ticket
	 * (relaxed stores) to its pvticket_unlock_kick scan, and orders the
	 * increment before our re-read of head (Dekker against its XCHG). */
	__atomic_fetch_add(slow, 1, __ATOMIC_SEQ_CST);
	/* Matches the XCHG of head in pvticket_release: after our increment,
	 * either we see its new head or it sees our count and kicks us; the
	 * acquire half orders its CS before ours. WAIT(head, h) blocks only
	 * while head == h and no KICK is pending, so a KICK sent between this
	 * load and the WAIT is not lost. */
	while ((h = __atomic_load_n(head, __ATOMIC_SEQ_CST)) != t)
		lock_wait(c, head, h);
	/* Relaxed: a releaser that still sees our count (or SLOW state) only
	 * scans or kicks needlessly; a stale KICK stays pending and makes a
	 * later WAIT return at once, which every WAIT loop re-checks. */
	__atomic_fetch_sub(slow, 1, __ATOMIC_RELAXED);
	lock_set_state(c, LHPVM_LOCK_STATE_WAITING);
}

static GUEST_SPIN_TEXT void pvticket_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *head = lk_lo32(&s->word), *tail = lk_lo32(&s->word2);
	/* Relaxed: the tail only hands out tickets; head orders the CS. */
	uint32_t t = __atomic_fetch_add(tail, 1, __ATOMIC_RELAXED);
	uint32_t h;

	lock_publish_ticket(c, t);
	for (uint64_t spins = 0; spins < c->spin_threshold; spins++) {
		/* Matches the XCHG of head in pvticket_release. */
		if ((h = lk_load_acq(head)) == t)
			return;
		if (lock_aware(c) && (spins & LOCK_PREEMPT_CHECK_MASK) == LOCK_PREEMPT_CHECK_MASK) {
			uint32_t v = lock_owner_vcpu(s);

			if (v == LOCK_NO_VCPU)
				v = lock_ticket_vcpu(c, h);
			if (lock_vcpu_preempted(c, v))
				break;
		}
		cpu_relax();
	}
	pvticket_slow(c, head, pvt_slow(s), t);
}

/* Outside the CS range: the lock is already free when this runs.
 * Relaxed loads: the caller's seq_cst load of the slow count read the
 * waiter's XADD in pvticket_slow (or a later RMW of the count), so the
 * waiter's lock_state, lock_id and ticket stores are visible here. The KICK
 * follows our XCHG of head (the doorbell store comes after it in order). */
static GUEST_NOINLINE void pvticket_unlock_kick(struct lock_ctx *c, uint32_t ticket)
{
	for (uint32_t v = 0; v < c->nr_vcpus; v++) {
		struct lhpvm_vcpu_page *p = lock_vcpu_page(c, v);

		if (lk_load(&p->lock_state) == LHPVM_LOCK_STATE_SLOW &&
		    lk_load(&p->lock_id) == c->lock_index && lk_load(&p->ticket) == ticket) {
			lock_kick(c, v);
			return;
		}
	}
}

static GUEST_CS_TEXT void pvticket_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *head = lk_lo32(&s->word);
	/* Relaxed: we hold the lock and only the holder writes head. */
	uint32_t next = lk_load(head) + 1;

	lock_hand_to(s, lock_ticket_vcpu(c, next));
	/* XCHG: release the lock and fence before reading the slow count.
	 * Matches lk_load_acq(head) in pvticket_acquire and the seq_cst load
	 * of head in pvticket_slow (our CS and granted store before theirs). */
	__atomic_exchange_n(head, next, __ATOMIC_SEQ_CST);
	/* Matches the XADD of the count in pvticket_slow (Dekker, above). */
	if (__atomic_load_n(pvt_slow(s), __ATOMIC_SEQ_CST) != 0)
		pvticket_unlock_kick(c, next);
}

const struct lock_impl lock_pvticket = {
	.name = "pvticket", .kind = LHPVM_LOCK_PV_TICKET,
	.acquire = pvticket_acquire, .release = pvticket_release,
};
