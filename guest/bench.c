/*
 * bench.c - the well-behaved workloads: hello, counter, null, hog.
 *
 * Each sets page->start_tsc/end_tsc around its timed part, fills page->ops
 * and returns its EXIT code. The page counters need no volatile stores when
 * only read after EXIT: the EXIT doorbell store has a "memory" clobber.
 */
#include "guest.h"

/* ---- hello -------------------------------------------------------------- */

int workload_hello(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	page->start_tsc = rdtsc_ordered();
	printf("hello from vCPU %u of %u\n", id, bi->nr_vcpus);
	page->end_tsc = rdtsc_ordered();
	page->ops = 1;
	return 0;
}

/* ---- counter ------------------------------------------------------------ */

/*
 * Test-and-set acquire: xchg until the old value was 0, pause between tries.
 * The whole loop is the "waiting for a lock" range for the host.
 */
GUEST_SPIN_TEXT void counter_tas_acquire(volatile uint64_t *word)
{
	while (__atomic_exchange_n(word, 1, __ATOMIC_ACQUIRE) != 0)
		cpu_relax();
}

/*
 * One locked increment of slot->counter. The increment is a separate load,
 * add and store through a volatile pointer, deliberately not atomic: with a
 * broken lock two vCPUs interleave and counts are lost, which the VMM sees
 * as counter != sum of ops.
 */
GUEST_CS_TEXT void counter_locked_increment(struct lhpvm_lock_slot *slot)
{
	volatile uint64_t *counter = &slot->counter;
	uint64_t v;

	counter_tas_acquire(&slot->word);
	v = *counter;
	*counter = v + 1;
	__atomic_store_n(&slot->word, 0, __ATOMIC_RELEASE);
}

int workload_counter(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	struct lhpvm_lock_slot *slot = lock_slots(bi);
	uint64_t n = bi->iterations; /* 0: until stop */
	uint64_t done = 0;

	(void)id;
	GUEST_ASSERT(bi->locks_gpa != 0);

	page->start_tsc = rdtsc_ordered();
	while ((n == 0 || done < n) && !stop_requested(bi)) {
		counter_locked_increment(&slot[0]);
		done++;
	}
	page->end_tsc = rdtsc_ordered();

	/* One increment per acquisition, so both equal this vCPU's share. */
	page->ops = done;
	page->acquisitions = done;
	return 0;
}

/* ---- null --------------------------------------------------------------- */

#define NULL_DEFAULT_ITERATIONS 10000

int workload_null(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	uint64_t n = bi->iterations ? bi->iterations : NULL_DEFAULT_ITERATIONS;
	uint64_t done, failures = 0;
	uint64_t t0, t1;

	/* Stop is honoured too (one cheap load per ~µs-long exit); ops then
	 * says how many calls the timing covers. */
	t0 = rdtsc_ordered();
	for (done = 0; done < n && !stop_requested(bi); done++)
		if (hc_null() != 0)
			failures++;
	t1 = rdtsc_ordered();

	page->start_tsc = t0;
	page->end_tsc = t1;
	page->hypercall_cycles = t1 - t0;
	page->ops = done;
	page->check_failures = failures;
	if (failures) {
		printf("null: vCPU %u: %lu of %lu NULL calls did not return 0\n",
		       id, failures, done);
		return 1;
	}
	return 0;
}

/* ---- hog ---------------------------------------------------------------- */

#define HOG_DEFAULT_CYCLES 10000

/* Busy-burn about `cycles` TSC cycles. No pause: this is work, not waiting. */
static GUEST_NOINLINE void hog_burn(uint64_t cycles)
{
	uint64_t t0 = rdtsc_ordered();

	while (rdtsc_ordered() - t0 < cycles)
		;
}

int workload_hog(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	uint64_t n = bi->iterations; /* 0: until stop */
	uint64_t cycles = bi->think_cycles ? bi->think_cycles : HOG_DEFAULT_CYCLES;
	volatile uint64_t *ops = &page->ops; /* the host watches it live */
	uint64_t done = 0;

	(void)id;
	*ops = 0;
	page->start_tsc = rdtsc_ordered();
	while ((n == 0 || done < n) && !stop_requested(bi)) {
		hog_burn(cycles);
		*ops = ++done;
	}
	page->end_tsc = rdtsc_ordered();
	return 0;
}
