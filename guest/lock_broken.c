/*
 * lock_broken.c - TEST ONLY, no mutual exclusion: a non-atomic
 * test-then-set. Wait until the word reads 0, pause a little (widening the
 * window a real race needs), then store 1. Two vCPUs that both read 0 both
 * "acquire": lockbench's owner check and the host's counter check must
 * catch it.
 *
 * Slot: word = 0 free / 1 "held".
 */
#include "lock.h"

#define BROKEN_WINDOW 8 /* pauses between the test and the set */

static GUEST_SPIN_TEXT void broken_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	while (lk_load(&s->word) != 0)
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
