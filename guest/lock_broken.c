/*
 * lock_broken.c - TEST ONLY, no mutual exclusion at all: acquire marks the
 * word held without looking at it. lockbench's owner check and the host's
 * counter check must catch it.
 *
 * An earlier version was a subtle race (a non-atomic test-then-set with a
 * small window), but whether a run catches a race depends on the machine:
 * on the emulated kvm runner, whose CPUs interleave coarsely (single-
 * threaded QEMU TCG), a 100 ms run could go unseen. With no exclusion, any
 * preemption of a vCPU inside its critical section while another runs, and
 * any two vCPUs truly running at once, is caught.
 *
 * Slot: word = 0 free / 1 "held".
 */
#include "lock.h"

static GUEST_SPIN_TEXT void broken_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Relaxed, and no acquire anywhere: deliberately no ordering. */
	lk_store(&s->word, 1);
}

static GUEST_CS_TEXT void broken_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Pairs with nothing (broken_acquire reads nothing); a release only to
	 * look like the other locks' unlock. */
	lk_store_rel(&s->word, 0);
}

const struct lock_impl lock_broken = {
	.name = "broken", .kind = LHPVM_LOCK_BROKEN,
	.acquire = broken_acquire, .release = broken_release,
};
