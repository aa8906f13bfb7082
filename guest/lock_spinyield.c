/*
 * lock_spinyield.c - spin, then yield to the holder: a test-and-test-and-set
 * lock whose word names the holder; a waiter spins up to spin_threshold
 * times, then YIELDs directed at the holder's vCPU (Xen SCHEDOP_yield /
 * Hyper-V long-spin-wait notification style) and spins again. Each YIELD
 * after a full threshold counts as a slow path.
 *
 * Slot: word = 0 free / holder vCPU id + 1 (set by the CAS that takes it).
 * Preempted-aware: every 16 spins, if the holder is preempted, YIELD to it at
 * once instead of finishing the threshold.
 */
#include "lock.h"

static GUEST_SPIN_TEXT void spinyield_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint64_t me = (uint64_t)c->id + 1;

	for (;;) {
		uint64_t w = 0;

		for (uint64_t spins = 0; spins < c->spin_threshold; spins++) {
			/* Relaxed test; the CAS is the acquire, matching the
			 * release store in spinyield_release. */
			w = lk_load(&s->word);
			if (w == 0 && lk_cas_acq(&s->word, 0, me))
				return;
			if (lock_aware(c) && (spins & LOCK_PREEMPT_CHECK_MASK) == LOCK_PREEMPT_CHECK_MASK &&
			    w != 0 && lock_vcpu_preempted(c, (uint32_t)(w - 1)))
				break;
			cpu_relax();
		}
		w = lk_load(&s->word); /* relaxed: only picks the YIELD target */
		if (w != 0 && w != me) {
			c->page->slow_paths++;
			lock_yield(c, w - 1);
		}
	}
}

static GUEST_CS_TEXT void spinyield_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Matches the acquire CAS in spinyield_acquire. */
	lk_store_rel(&s->word, 0);
}

const struct lock_impl lock_spinyield = {
	.name = "spinyield", .kind = LHPVM_LOCK_SPIN_YIELD,
	.acquire = spinyield_acquire, .release = spinyield_release,
};
