/*
 * lock_tas.c - test-and-set: XCHG 1 into the word until the old value is 0,
 * one PAUSE between attempts. Every attempt is a write, so waiters keep the
 * line bouncing; the simplest lock and the worst under contention.
 *
 * Slot: word = 0 free / 1 held.
 * Preempted-aware: every 16 spins, if the holder's vCPU (slot->owner - 1) is
 * preempted, YIELD to it (there is no WAIT slow path).
 */
#include "lock.h"

static GUEST_SPIN_TEXT void tas_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t spins = 0;

	/* Matches the release store in tas_release: the previous holder's CS
	 * happens before ours. No release needed: a failed XCHG stores 1 over 1. */
	while (__atomic_exchange_n(&s->word, 1, __ATOMIC_ACQUIRE) != 0) {
		cpu_relax();
		if (lock_aware(c) && (++spins & LOCK_PREEMPT_CHECK_MASK) == 0)
			lock_yield_if_preempted(c, lock_owner_vcpu(s));
	}
}

static GUEST_CS_TEXT void tas_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Matches the acquire XCHG in tas_acquire. */
	lk_store_rel(&s->word, 0);
}

const struct lock_impl lock_tas = {
	.name = "tas", .kind = LHPVM_LOCK_TAS,
	.acquire = tas_acquire, .release = tas_release,
};
