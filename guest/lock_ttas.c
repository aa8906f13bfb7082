/*
 * lock_ttas.c - test-and-test-and-set with bounded exponential backoff:
 * spin reading the word (shared, no writes) until it is 0, then try one
 * XCHG; a waiter that loses the race backs off 1, 2, 4, ... up to
 * TTAS_BACKOFF_MAX pauses before reading again.
 *
 * Slot: word = 0 free / 1 held.
 * Preempted-aware: every 16 spins, if the holder's vCPU (slot->owner - 1) is
 * preempted, YIELD to it.
 */
#include "lock.h"

#define TTAS_BACKOFF_MAX 1024u

static GUEST_SPIN_TEXT void ttas_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t backoff = 1, spins = 0;

	for (;;) {
		/* Relaxed: only a test; the XCHG below is the acquire. */
		while (lk_load(&s->word) != 0) {
			cpu_relax();
			if (lock_aware(c) && (++spins & LOCK_PREEMPT_CHECK_MASK) == 0)
				lock_yield_if_preempted(c, lock_owner_vcpu(s));
		}
		/* Matches the release store in ttas_release. */
		if (__atomic_exchange_n(&s->word, 1, __ATOMIC_ACQUIRE) == 0)
			return;
		/* Lost the race to another waiter: back off before re-reading. */
		for (uint32_t i = 0; i < backoff; i++)
			cpu_relax();
		if (backoff < TTAS_BACKOFF_MAX)
			backoff <<= 1;
	}
}

static GUEST_CS_TEXT void ttas_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Matches the acquire XCHG in ttas_acquire. */
	lk_store_rel(&s->word, 0);
}

const struct lock_impl lock_ttas = {
	.name = "ttas", .kind = LHPVM_LOCK_TTAS,
	.acquire = ttas_acquire, .release = ttas_release,
};
