/*
 * lock_broken.c - TEST ONLY, no mutual exclusion: a non-atomic
 * test-then-set whose wait gives up. Wait until the word reads 0, but for at
 * most BROKEN_PATIENCE spins (a timeout bug), pause a little, then store 1.
 * Two vCPUs that both read 0 both "acquire"; so does one that runs out of
 * patience while the holder is preempted inside its critical section.
 * lockbench's owner check and the host's counter check must catch it.
 *
 * The give-up makes the failure certain wherever vCPUs are preempted, not
 * only where two of them truly run at once and race through the small
 * window: on an emulated CPU that interleaves its CPUs coarsely (the kvm
 * runner under QEMU TCG), a pure test-then-set race can go a whole run
 * unseen.
 *
 * Slot: word = 0 free / 1 "held".
 */
#include "lock.h"

#define BROKEN_WINDOW 8      /* pauses between the test and the set */
#define BROKEN_PATIENCE 1024 /* spins before it barges in anyway */

static GUEST_SPIN_TEXT void broken_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	for (int i = 0; i < BROKEN_PATIENCE && lk_load(&s->word) != 0; i++)
		cpu_relax();
	for (int i = 0; i < BROKEN_WINDOW; i++)
		cpu_relax();
	lk_store(&s->word, 1);
}

static GUEST_CS_TEXT void broken_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	lk_store_rel(&s->word, 0);
}

const struct lock_impl lock_broken = {
	.name = "broken", .kind = LHPVM_LOCK_BROKEN,
	.acquire = broken_acquire, .release = broken_release,
};
