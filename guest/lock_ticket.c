/*
 * lock_ticket.c - FIFO ticket lock: take a ticket with one LOCK XADD on the
 * tail, spin until the head (ticket now served) equals it; release advances
 * the head. Strict FIFO: under overcommit the lock is handed to the next
 * ticket even when that waiter's vCPU is preempted (lock-waiter preemption).
 *
 * Slot: low 32 bits of word = head, low 32 bits of word2 = tail.
 * Preempted-aware: every 16 spins, find the vCPU we wait for - the holder
 * (slot->owner - 1), or when owner is not set the vCPU whose published ticket
 * is the head (the holder just before/after its CS, or a next-in-line that
 * has not noticed its turn) - and YIELD to it if it is preempted.
 */
#include "lock.h"

static GUEST_SPIN_TEXT void ticket_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *head = lk_lo32(&s->word), *tail = lk_lo32(&s->word2);
	/* Relaxed: the tail only hands out tickets (the RMW makes them unique);
	 * the CS is ordered through head, below and in ticket_release. */
	uint32_t t = __atomic_fetch_add(tail, 1, __ATOMIC_RELAXED);
	uint32_t h, spins = 0;

	lock_publish_ticket(c, t);
	/* Matches the release store of head in ticket_release: the previous
	 * holder's CS (and its lock_hand_to) happens before ours. */
	while ((h = lk_load_acq(head)) != t) {
		cpu_relax();
		if (lock_aware(c) && (++spins & LOCK_PREEMPT_CHECK_MASK) == 0) {
			uint32_t v = lock_owner_vcpu(s);

			if (v == LOCK_NO_VCPU)
				v = lock_ticket_vcpu(c, h);
			lock_yield_if_preempted(c, v);
		}
	}
}

static GUEST_CS_TEXT void ticket_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *head = lk_lo32(&s->word);

	/* Relaxed: we hold the lock, our ticket_acquire's acquire load read this
	 * head, and only the holder writes it. */
	uint32_t next = lk_load(head) + 1;

	/* Granted to whoever holds the next ticket (if it has published it). */
	lock_hand_to(s, lock_ticket_vcpu(c, next));
	/* Only the holder writes the head: no atomic add needed.
	 * Matches lk_load_acq(head) in ticket_acquire: our CS and the granted
	 * store above are visible to the next ticket's holder before it runs. */
	lk_store_rel(head, next);
}

const struct lock_impl lock_ticket = {
	.name = "ticket", .kind = LHPVM_LOCK_TICKET,
	.acquire = ticket_acquire, .release = ticket_release,
};
