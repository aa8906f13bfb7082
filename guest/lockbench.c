/*
 * lockbench.c - the `lock` workload (the lock lab's benchmark).
 *
 * Every vCPU loops over: publish (lock_state = WAITING, lock_id), acquire
 * (timed), critical section, release, think. The critical section checks
 * slot->owner == 0, sets it to id + 1, increments slot->counter with a plain
 * load / add / store (deliberately not atomic: a lock without mutual
 * exclusion loses increments, which the host sees as sum(counters) !=
 * sum(acquisitions)), burns cs_cycles TSC cycles, checks owner == id + 1 and
 * clears it. A failed owner check is counted and the first one reported in
 * the page and on the console; the run goes on (the host fails it).
 *
 * Parameters (BootInfo): lock_kind (0: ticket), nr_locks (0: 1; vCPU id %
 * nr_locks picks the slot), cs_cycles, think_cycles, spin_threshold (0:
 * 1 << 15), p_ticket_shift (0: 14), flags (LHPVM_FLAG_DELAY_HINT, LHPVM_FLAG_PREEMPTED_AWARE),
 * iterations (0: until bi->stop).
 *
 * Accounting, in this vCPU's page: ops = acquisitions, spin_cycles (sum of
 * acquire times less the steal the host published meanwhile: the vCPU spun
 * only while it ran), acquire_hist (log2 buckets of acquire times, steal
 * included: the latency the workload saw) and acquire_max_cycles,
 * start_tsc/end_tsc around the loop; the locks add slow_paths, waits,
 * wait_cycles, kicks and yields; the delay hint adds its yields.
 *
 * Code placement: see lock.h. lockbench_op is the GUEST_CS_TEXT function
 * that acquires, runs the critical section and releases.
 *
 * Also compiled into the host harness (hosttest/), unchanged.
 */
#include "lock.h"

const struct lock_impl *lock_impl_by_kind(uint32_t kind)
{
	static const struct lock_impl *const all[] = {
		&lock_tas, &lock_ttas, &lock_ticket, &lock_mcs, &lock_pvticket,
		&lock_pvqspin, &lock_spinyield, &lock_pticket, &lock_broken,
		&lock_qspin, &lock_virt,
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i]->kind == kind)
			return all[i];
	return NULL;
}

/* A failed owner check: count it, and record and report the first one.
 * `found` is the owner value seen (vCPU id + 1, 0: none). Outside the CS
 * range although it runs holding the lock: it is rare and slow (PRINT). */
static GUEST_NOINLINE void lockbench_check_failed(struct lock_ctx *c, const struct lock_impl *l,
						  uint64_t found, int on_exit)
{
	struct lhpvm_vcpu_page *p = c->page;

	if (p->check_failures++ != 0)
		return;
	p->check_fail_lock = (uint64_t)c->lock_index + 1;
	p->check_fail_owner = found;
	if (found)
		printf("lock %s: lock %u: mutual exclusion failed: vCPU %u %s the critical section and found vCPU %lu as its owner\n",
		       l->name, c->lock_index, c->id, on_exit ? "leaving" : "entering", found - 1);
	else
		printf("lock %s: lock %u: mutual exclusion failed: vCPU %u leaving the critical section found no owner (another vCPU left it under us)\n",
		       l->name, c->lock_index, c->id);
}

/*
 * One operation: acquire, critical section, release. Returns the acquire
 * time in TSC cycles. The whole function is the CS range; while it is inside
 * the lock's acquire function RIP is in the spin range instead.
 */
static GUEST_CS_TEXT uint64_t lockbench_op(struct lock_ctx *c, const struct lock_impl *l,
					   struct lhpvm_lock_slot *s, uint64_t cs_cycles, uint64_t *spin)
{
	struct lhpvm_vcpu_page *p = c->page;
	volatile uint64_t *counter = &s->counter;
	const uint64_t me = (uint64_t)c->id + 1;
	const int hint = (c->flags & LHPVM_FLAG_DELAY_HINT) != 0;
	uint64_t t0, t1, o, v;
	uint64_t steal0 = lock_steal_ns(c);

	t0 = rdtsc_ordered();
	l->acquire(c, s); /* its acquire orders the CS's relaxed/plain accesses */
	t1 = rdtsc_ordered();
	/* The acquisition took t1 - t0 (its latency); of that, the vCPU spun
	 * only while it ran: the steal in between is the host's, not spin. */
	*spin = (t1 - t0) - lock_steal_cycles(c, steal0, t1 - t0);
	lock_grant(s, c->id); /* ours now, however it came to us */
	lk_store(&p->lock_state, LHPVM_LOCK_STATE_HOLDING);
	if (hint)
		lk_store(&p->in_cs, 1);

	o = lk_load(&s->owner); /* relaxed: the lock orders it; others read a hint */
	if (o != 0)
		lockbench_check_failed(c, l, o, 0);
	lk_store(&s->owner, me);
	v = *counter;
	*counter = v + 1;
	if (cs_cycles) {
		uint64_t b0 = rdtsc_ordered();

		while (rdtsc_ordered() - b0 < cs_cycles)
			;
	}
	o = lk_load(&s->owner);
	if (o != me)
		lockbench_check_failed(c, l, o, 1);
	lk_store(&s->owner, 0);
	lock_grant(s, LOCK_NO_VCPU); /* a FIFO release hands it to the next waiter */

	l->release(c, s); /* its release publishes the CS to the next holder */
	if (hint)
		lk_store(&p->in_cs, 0);
	lk_store(&p->lock_state, LHPVM_LOCK_STATE_NONE);
	return t1 - t0;
}

/* Work outside the lock: busy-burn about `cycles` TSC cycles. */
static GUEST_NOINLINE void lockbench_think(uint64_t cycles)
{
	uint64_t t0 = rdtsc_ordered();

	while (rdtsc_ordered() - t0 < cycles)
		;
}

/* log2 bucket of an acquire time: floor(log2(x)), 0 for 0 and 1, clamped. */
static inline unsigned lockbench_bucket(uint64_t x)
{
	unsigned b = x <= 1 ? 0 : 63 - (unsigned)__builtin_clzll(x);

	return b < LHPVM_HISTOGRAM_BUCKET ? b : LHPVM_HISTOGRAM_BUCKET - 1;
}

int workload_lock(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	const uint32_t kind = bi->lock_kind ? bi->lock_kind : LHPVM_LOCK_TICKET;
	const uint32_t nr_locks = bi->nr_locks ? bi->nr_locks : 1;
	const uint64_t n = bi->iterations; /* 0: until stop */
	const uint64_t cs_cycles = bi->cs_cycles, think_cycles = bi->think_cycles;
	const struct lock_impl *l = lock_impl_by_kind(kind);
	struct lhpvm_lock_slot *slot;
	struct lock_ctx c;
	uint64_t done = 0, max = 0;

	if (!l) {
		printf("workload lock: unknown lock kind %u\n", kind);
		return 2;
	}
	if (nr_locks > LHPVM_MAX_LOCKS) {
		printf("workload lock: %u locks, at most %u\n", nr_locks, LHPVM_MAX_LOCKS);
		return 2;
	}
	GUEST_ASSERT(bi->locks_gpa != 0 && bi->vcpu_blocks_gpa != 0);

	c.page = page;
	c.pages = (uintptr_t)bi->vcpu_blocks_gpa;
	c.id = id;
	c.nr_vcpus = bi->nr_vcpus;
	c.lock_index = id % nr_locks;
	c.flags = bi->flags;
	c.spin_threshold = bi->spin_threshold ? bi->spin_threshold : LOCK_DEFAULT_SPIN_THRESHOLD;
	c.spin_threshold_head = bi->spin_threshold_head ? bi->spin_threshold_head : c.spin_threshold;
	c.p_ticket_shift = bi->p_ticket_shift ? bi->p_ticket_shift : LHPVM_DEFAULT_P_TICKET_SHIFT;
	if (c.p_ticket_shift > LHPVM_MAX_P_TICKET_SHIFT)
		c.p_ticket_shift = LHPVM_MAX_P_TICKET_SHIFT;
	c.pv_steal = bi->pv_steal;
	c.pv_pending = bi->pv_pending;
	c.pv_prev_check = bi->pv_prev_check;
	c.pv_kick = bi->pv_kick;
	c.tsc_khz = bi->tsc_khz;
	slot = lock_slots(bi) + c.lock_index;

	page->start_tsc = rdtsc_ordered();
	while ((n == 0 || done < n) && !stop_requested(bi)) {
		uint64_t cycles, spin;

		/* Relaxed: read by the host and the holder lookups as hints;
		 * pvticket_slow's XADD publishes them to pvticket_unlock_kick. */
		lk_store(&page->lock_id, c.lock_index);
		lk_store(&page->lock_state, LHPVM_LOCK_STATE_WAITING);
		cycles = lockbench_op(&c, l, slot, cs_cycles, &spin);

		done++;
		page->acquisitions = done;
		page->ops = done;
		page->spin_cycles += spin;
		page->acquire_hist[lockbench_bucket(cycles)]++;
		if (cycles > max)
			page->acquire_max_cycles = max = cycles;

		/* Delay hint, guest half: the host deferred a preemption while
		 * we were in the CS and asks us to give the CPU back now. */
		/* Relaxed: a request from the host, nothing is read under it. */
		if ((c.flags & LHPVM_FLAG_DELAY_HINT) && lk_load(&page->yield_requested)) {
			lk_store(&page->yield_requested, 0);
			lock_yield(&c, LHPVM_YIELD_ANY);
		}
		if (think_cycles)
			lockbench_think(think_cycles);
	}
	page->end_tsc = rdtsc_ordered();
	return 0;
}
