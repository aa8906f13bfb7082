/*
 * lock_virt.c - Linux's virt_spin_lock (arch/x86/include/asm/qspinlock.h):
 * what a KVM guest without PV_UNHALT runs instead of the queued spinlock.
 * The kernel's reason: a fair lock suffers lock-holder and lock-waiter
 * preemption, an unfair one only the first. A test-and-test-and-set on the
 * qspinlock word, taken only when the whole word is 0, released like the
 * native qspinlock (the locked byte to 0).
 */
#include "lock.h"

static GUEST_SPIN_TEXT void virt_acquire(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	uint32_t *w = lk_lo32(&s->word);

	(void)c;
	for (;;) {
		/* Relaxed test; the CAS is the acquire, matching the release
		 * store in virt_release. */
		if (lk_load(w) == 0 && lk_cas_acq(w, 0, 1))
			return;
		cpu_relax();
	}
}

static GUEST_CS_TEXT void virt_release(struct lock_ctx *c, struct lhpvm_lock_slot *s)
{
	(void)c;
	/* Matches the acquire CAS in virt_acquire. A byte store against a
	 * 4-byte CAS: mixed-size, which C11 does not model but x86 orders like
	 * same-size accesses (Linux's native unlock does the same). */
	__atomic_store_n((uint8_t *)lk_lo32(&s->word), 0, __ATOMIC_RELEASE);
}

const struct lock_impl lock_virt = {
	.name = "virt", .kind = LHPVM_LOCK_VIRT,
	.acquire = virt_acquire, .release = virt_release,
};
