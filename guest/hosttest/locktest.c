/*
 * locktest.c - run the guest's lock lab on the host: the same lock_*.c and
 * lockbench.c (workload_lock), one pthread per "vCPU", a fake boot info,
 * lock area and vCPU pages in host memory, WAIT/KICK on futexes (host.c).
 *
 * Runs are sized by time: the driver sets bi->stop (BootInfo.Stop, as the
 * VMM does) at the run's deadline and each thread leaves lockbench's loop
 * between two acquisitions (iterations 0: until stop). With more threads
 * than free CPUs a FIFO lock (ticket, mcs, pvticket, qspinlock, pticket,
 * pvqspin without stealing) hands the lock to waiters the host has
 * descheduled, and its rate falls many times over when something keeps a CPU
 * busy: an iteration count has no run time, a duration has. So every case
 * of the suite is time-bounded, not only those: "fewer threads than CPUs"
 * is no promise on a busy host either. The minimum work a run must show
 * does not shrink with the load, only takes longer: the deadline waits for
 * --min-acq acquisitions, --min-waits WAITs and KICKs (soaks) and, for
 * --expect-fail, a failed owner check. --iters N alone is the old
 * iteration-sized run (exactly N per thread); with --duration, a cap.
 *
 * Every run is a forked child, so a hung or crashed run is reported and the
 * rest still run. A child checks, exactly, against what was done: every
 * thread returned 0, sum of the slot counters == sum of acquisitions (==
 * threads * iterations if no deadline stopped it), no owner-check failures,
 * every lock left free, the page counters agree with the host's own
 * KICK/WAIT counts, and the minimum work is there. Two hang detectors: a
 * lost wakeup (every live thread blocked in WAIT with no KICK pending, no
 * wake for 500 ms) and a timeout, --timeout seconds (60) past the deadline,
 * far above any run's time; either fails with a description of each thread.
 * --expect-fail inverts the verdict for the broken lock: it must be caught.
 *
 * Optional --chaos simulates preemption: a thread marks a random "vCPU"
 * preempted in its page, stops it with a signal (the handler sleeps until
 * the mark is cleared, 50-500 us later), and now and then sets
 * yield_requested for the delay hint.
 *
 * Prints one line per run and, last, "N passed, N failed"; exits non-zero
 * if any run failed.
 */
#define _GNU_SOURCE
#define LOCKTEST_DRIVER /* the real printf here */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lock.h"
#include "host.h"

#ifdef __SANITIZE_THREAD__
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#define TSAN 1
#else
#define TSAN 0
#endif

struct cfg {
	const char *lock;
	uint32_t kind;
	uint32_t threads;
	uint64_t iters;
	uint64_t spin_threshold, spin_threshold_head;
	uint32_t p_ticket_shift; /* pticket's timeout unit (0: the default) */
	uint32_t pv_steal, pv_pending, pv_prev_check, pv_kick; /* LHPVM_PV_*: pvqspin's knobs */
	uint64_t cs_cycles, think_cycles;
	uint32_t locks;
	uint32_t flags;
	bool chaos;
	bool expect_fail;
	uint64_t duration_ms; /* time-bounded run: stop after this (0: iteration-sized) */
	uint64_t min_acq;     /* time-bounded: not before this many acquisitions in all */
	uint64_t min_waits;   /* soak: at least this many WAITs and KICKs */
	double timeout_s;     /* hang detector: this long past the deadline (or start) */
};

static const struct cfg defaults = {
	.lock = "ticket", .kind = LHPVM_LOCK_TICKET, .threads = 4, .iters = 0,
	.spin_threshold = 0, .cs_cycles = 200, .think_cycles = 200, .locks = 1,
	.duration_ms = 1000, .timeout_s = 60,
};

static const char *const good_locks[] = {
	"tas", "ttas", "ticket", "mcs", "pvticket", "pvqspin", "spinyield", "pticket",
	"qspinlock", "virt",
};
#define NGOOD (sizeof(good_locks) / sizeof(good_locks[0]))

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const struct lock_impl *lock_by_name(const char *name)
{
	static const uint32_t kinds[] = {
		LHPVM_LOCK_TAS, LHPVM_LOCK_TTAS, LHPVM_LOCK_TICKET, LHPVM_LOCK_MCS,
		LHPVM_LOCK_PV_TICKET, LHPVM_LOCK_PVQ_SPIN, LHPVM_LOCK_SPIN_YIELD,
		LHPVM_LOCK_P_TICKET, LHPVM_LOCK_BROKEN, LHPVM_LOCK_Q_SPIN, LHPVM_LOCK_VIRT,
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const struct lock_impl *l = lock_impl_by_kind(kinds[i]);

		if (l && strcmp(l->name, name) == 0)
			return l;
	}
	return NULL;
}

/* ---- one run (in the child) ------------------------------------------------ */

static struct lhpvm_boot_info *bi;
static uint8_t *blocks;
static struct lhpvm_lock_slot *slots;
static pthread_t *tids;
static int *rets;
static double *ends; /* when each thread finished */
static uint32_t finished;
static bool ignore_races;
static pthread_barrier_t start_barrier, end_barrier;

static struct lhpvm_vcpu_page *page_of(uint32_t id)
{
	return (struct lhpvm_vcpu_page *)(blocks + (size_t)id * LHPVM_VCPU_BLOCK_SIZE);
}

/* Like the VMM: "vCPU" i runs on the (i mod n)-th CPU this process may use,
 * so that threads <= CPUs really run in parallel from the first moment. */
static void pin_self(uint32_t id)
{
	cpu_set_t allowed, one;
	int ncpu, k = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return;
	ncpu = CPU_COUNT(&allowed);
	if (ncpu <= 0)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		if (k++ == (int)(id % (uint32_t)ncpu)) {
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
			return;
		}
	}
}

static void *vcpu_thread(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;

	host_bind_self(id);
	pin_self(id);
#if TSAN
	/* The broken lock races on purpose: only its verdict matters. */
	if (ignore_races)
		__tsan_ignore_thread_begin();
#endif
	pthread_barrier_wait(&start_barrier);
	rets[id] = workload_lock(bi, id, page_of(id));
	ends[id] = now_s();
#if TSAN
	if (ignore_races)
		__tsan_ignore_thread_end();
#endif
	__atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
	/* Stay alive until the chaos thread has stopped signalling us. */
	pthread_barrier_wait(&end_barrier);
	return NULL;
}

static __thread struct lhpvm_vcpu_page *chaos_self_page;
static uint32_t chaos_stop;

/* Simulated preemption: the victim sleeps in this handler while its page
 * says preempted. */
static void preempt_handler(int sig)
{
	struct timespec ts = { 0, 20000 };

	(void)sig;

	if (!chaos_self_page)
		return;
	while (__atomic_load_n(&chaos_self_page->preempted, __ATOMIC_ACQUIRE))
		nanosleep(&ts, NULL);
}

static uint64_t chaos_preemptions;

static void *chaos_thread(void *arg)
{
	uint32_t n = bi->nr_vcpus, seed = (uint32_t)(uintptr_t)arg;

	while (!__atomic_load_n(&chaos_stop, __ATOMIC_ACQUIRE)) {
		uint32_t v, us;
		struct timespec ts;

		seed = seed * 1103515245u + 12345u;
		v = (seed >> 16) % n;
		/* Three times in four, stop a thread inside lock/unlock: one
		 * that waits for a lock or holds it (the states lockbench.c and
		 * the locks publish), if there is one. */
		if ((seed & 3) != 0)
			for (uint32_t k = 0; k < n; k++) {
				uint32_t w = (v + k) % n;

				if (__atomic_load_n(&page_of(w)->lock_state, __ATOMIC_RELAXED) !=
				    LHPVM_LOCK_STATE_NONE) {
					v = w;
					break;
				}
			}
		us = 50 + (seed >> 8) % 450;
		if (((seed >> 4) & 7) == 0)
			__atomic_store_n(&page_of(v)->yield_requested, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&page_of(v)->preempted, 1, __ATOMIC_RELEASE);
		chaos_preemptions++;
		pthread_kill(tids[v], SIGUSR1);
		ts = (struct timespec){ 0, us * 1000L };
		nanosleep(&ts, NULL);
		__atomic_store_n(&page_of(v)->preempted, 0, __ATOMIC_RELEASE);
		ts = (struct timespec){ 0, (long)(200 + (seed % 800)) * 1000L };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void *chaos_vcpu_thread(void *arg)
{
	chaos_self_page = page_of((uint32_t)(uintptr_t)arg);
	return vcpu_thread(arg);
}

static const char *const steal_names[] = { "hybrid", "off", "once" };
static const char *const pending_names[] = { "on", "off" };
static const char *const prev_check_names[] = { "node", "off", "preempted" };
static const char *const kick_names[] = { "deferred", "immediate" };

/* "pvqspin   threads=4 iters=... aware hint chaos": what a result line names. */
static void cfg_str(const struct cfg *c, char *buf, size_t n)
{
	char pv[96] = "";

	if (c->kind == LHPVM_LOCK_PVQ_SPIN)
		snprintf(pv, sizeof(pv), " steal=%s pending=%s prev=%s kick=%s head=%lu",
			 steal_names[c->pv_steal], pending_names[c->pv_pending],
			 prev_check_names[c->pv_prev_check], kick_names[c->pv_kick],
			 c->spin_threshold_head);
	else if (c->kind == LHPVM_LOCK_P_TICKET && c->p_ticket_shift)
		snprintf(pv, sizeof(pv), " shift=%u", c->p_ticket_shift);
	char size[96];
	int k;

	/* "iters=N" (iteration-sized) or "Dms [iters<=N] [min-acq=N]" (time-bounded). */
	if (!c->duration_ms) {
		k = snprintf(size, sizeof(size), "iters=%lu", c->iters);
	} else {
		k = snprintf(size, sizeof(size), "%lums", c->duration_ms);
		if (c->iters)
			k += snprintf(size + k, sizeof(size) - k, " iters<=%lu", c->iters);
		if (c->min_acq)
			k += snprintf(size + k, sizeof(size) - k, " min-acq=%lu", c->min_acq);
	}
	if (c->min_waits)
		snprintf(size + k, sizeof(size) - k, " min-waits=%lu", c->min_waits);
	snprintf(buf, n, "%-9s threads=%u %s spin=%lu cs=%lu think=%lu locks=%u%s%s%s%s%s",
		 c->lock, c->threads, size, c->spin_threshold, c->cs_cycles, c->think_cycles,
		 c->locks ? c->locks : 1, pv,
		 c->flags & LHPVM_FLAG_PREEMPTED_AWARE ? " aware" : "",
		 c->flags & LHPVM_FLAG_DELAY_HINT ? " hint" : "",
		 c->chaos ? " chaos" : "",
		 c->expect_fail ? " expect-fail" : "");
}

/*
 * Is a thread in WAIT with a KICK pending? Then it has been woken and is not
 * lost, only not yet run: on a busy host a woken thread was seen to wait
 * over 500 ms for its CPU. (A KICK to the wrong vCPU is no cover: its WAIT
 * consumes the KICK when it returns.)
 */
static bool kicked_in_wait(uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (__atomic_load_n(&host_vcpus[i].wait_addr, __ATOMIC_SEQ_CST) &&
		    __atomic_load_n(&host_vcpus[i].kick_pending, __ATOMIC_SEQ_CST))
			return true;
	return false;
}

static double run_t0;     /* the run's start, on both clocks: */
static uint64_t run_tsc0; /* describe_threads converts TSC stamps */

static void describe_threads(FILE *f)
{
	double tsc_per_s = (rdtsc_ordered() - run_tsc0) / (now_s() - run_t0);

	for (uint32_t i = 0; i < bi->nr_vcpus; i++) {
		struct lhpvm_vcpu_page *p = page_of(i);
		struct host_vcpu *h = &host_vcpus[i];
		uint64_t wa = __atomic_load_n(&h->wait_addr, __ATOMIC_RELAXED);

		fprintf(f, "    vCPU %u: %s, acquisitions %lu, lock_state %u, lock %u, ticket %u",
			i, rets[i] == -1 ? "running" : "done",
			__atomic_load_n(&p->acquisitions, __ATOMIC_RELAXED),
			__atomic_load_n(&p->lock_state, __ATOMIC_RELAXED),
			__atomic_load_n(&p->lock_id, __ATOMIC_RELAXED),
			__atomic_load_n(&p->ticket, __ATOMIC_RELAXED));
		if (wa)
			fprintf(f, ", in WAIT(%#lx, expected %u; now %u)", wa,
				__atomic_load_n(&h->wait_val, __ATOMIC_RELAXED),
				__atomic_load_n((uint32_t *)(uintptr_t)wa, __ATOMIC_RELAXED));
		/* A KICK pending for a thread still in WAIT: woken, not yet run. */
		fprintf(f, ", WAITs %lu, KICKs in %lu",
			__atomic_load_n(&h->wait_calls, __ATOMIC_RELAXED),
			__atomic_load_n(&h->kicks_received, __ATOMIC_RELAXED));
		if (__atomic_load_n(&h->kick_pending, __ATOMIC_RELAXED)) {
			uint64_t k = __atomic_load_n(&p->kick_tsc, __ATOMIC_RELAXED);

			fprintf(f, ", KICK pending");
			if (k)
				fprintf(f, " (kicked %.0f ms ago)", (rdtsc_ordered() - k) / tsc_per_s * 1e3);
		}
		fprintf(f, "\n");
	}
	for (uint32_t i = 0; i < (bi->nr_locks ? bi->nr_locks : 1); i++)
		fprintf(f, "    slot %u: word %#lx word2 %#lx spare0 %#lx counter %lu owner %lu\n", i,
			__atomic_load_n(&slots[i].word, __ATOMIC_RELAXED),
			__atomic_load_n(&slots[i].word2, __ATOMIC_RELAXED),
			__atomic_load_n(lock_spare(&slots[i], 0), __ATOMIC_RELAXED),
			__atomic_load_n(&slots[i].counter, __ATOMIC_RELAXED),
			__atomic_load_n(&slots[i].owner, __ATOMIC_RELAXED));
}

/* Is the lock in slot s free and consistent after a run? */
static const char *lock_left_free(uint32_t kind, struct lhpvm_lock_slot *s)
{
	uint32_t w = (uint32_t)s->word, w2 = (uint32_t)s->word2, sp = (uint32_t)*lock_spare(s, 0);

	if (s->owner != 0)
		return "owner not cleared";
	if (s->granted != 0)
		return "still granted to a vCPU";
	switch (kind) {
	case LHPVM_LOCK_TICKET:
		return w == w2 ? NULL : "head != tail";
	case LHPVM_LOCK_PV_TICKET:
		return w != w2 ? "head != tail" : sp != 0 ? "slow-waiter count not 0" : NULL;
	case LHPVM_LOCK_P_TICKET:
		return w != w2 ? "grant != request" : sp != 0 ? "lock word held" : NULL;
	case LHPVM_LOCK_PVQ_SPIN:
	case LHPVM_LOCK_Q_SPIN:
		return w & 0xffffu ? "locked or pending byte set" : w ? "queue not empty" : NULL;
	default:
		return s->word != 0 ? "lock word not free" : NULL;
	}
}

/*
 * The run so far, as the driver sees it while the vCPU threads go:
 * acquisitions and owner-check failures from the pages (plain stores by the
 * threads: TSan must not see these reads, which are only a progress
 * estimate), WAITs and KICKs from host.c's own atomic counts (which the end
 * of the run checks against the pages').
 */
struct progress {
	uint64_t acq, fails, waits, kicks;
};

static struct progress progress_now(uint32_t n)
{
	struct progress pr = { 0 };

#if TSAN
	__tsan_ignore_thread_begin();
#endif
	for (uint32_t i = 0; i < n; i++) {
		pr.acq += __atomic_load_n(&page_of(i)->acquisitions, __ATOMIC_RELAXED);
		pr.fails += __atomic_load_n(&page_of(i)->check_failures, __ATOMIC_RELAXED);
		pr.waits += __atomic_load_n(&host_vcpus[i].wait_calls, __ATOMIC_RELAXED);
		pr.kicks += __atomic_load_n(&host_vcpus[i].kicks_received, __ATOMIC_RELAXED);
	}
#if TSAN
	__tsan_ignore_thread_end();
#endif
	return pr;
}

/*
 * A time-bounded run's minimum work, which its deadline waits for: the
 * amount of work a run shows must not depend on how busy the machine is,
 * only how long it takes to get there does. NULL once done, else what is
 * missing.
 */
static const char *work_missing(const struct cfg *c, const struct progress *pr, char *buf, size_t n)
{
	if (pr->acq < c->min_acq)
		snprintf(buf, n, "%lu of %lu acquisitions", pr->acq, c->min_acq);
	else if (pr->waits < c->min_waits || pr->kicks < c->min_waits)
		snprintf(buf, n, "%lu WAITs and %lu KICKs of %lu each", pr->waits, pr->kicks, c->min_waits);
	else if (c->expect_fail && pr->fails == 0)
		snprintf(buf, n, "NOT CAUGHT yet: no failed owner check");
	else
		return NULL;
	return buf;
}

static int run_child(const struct cfg *c)
{
	uint32_t n = c->threads, nlocks = c->locks ? c->locks : 1;
	uint64_t acq = 0, counters = 0, fails = 0, slow = 0, waits = 0, kicks = 0, yields = 0;
	uint64_t kicks_recv = 0, wait_calls = 0, wait_cycles = 0, spin_cycles = 0;
	uint64_t steals = 0, pendings = 0, hashed = 0;
	uint64_t last_wakes;
	const char *why = NULL;
	char whybuf[256], cs[256], stopbuf[32] = "";
	double t0, elapsed, t_stop = 0, duration = c->duration_ms / 1e3;
	int stuck = 0, bad_ret = 0;
	bool stopped = false;
	pthread_t chaos;

	bi = aligned_alloc(4096, 4096);
	blocks = aligned_alloc(LHPVM_VCPU_BLOCK_SIZE, (size_t)n * LHPVM_VCPU_BLOCK_SIZE);
	slots = aligned_alloc(4096, LHPVM_LOCK_AREA_SIZE);
	tids = calloc(n, sizeof(*tids));
	rets = calloc(n, sizeof(*rets));
	ends = calloc(n, sizeof(*ends));
	if (!bi || !blocks || !slots || !tids || !rets || !ends) {
		perror("alloc");
		return 2;
	}
	memset(bi, 0, 4096);
	memset(blocks, 0, (size_t)n * LHPVM_VCPU_BLOCK_SIZE);
	memset(slots, 0, LHPVM_LOCK_AREA_SIZE);
	for (uint32_t i = 0; i < n; i++)
		rets[i] = -1;

	bi->magic = LHPVM_BOOT_MAGIC;
	bi->abi_version = LHPVM_VERSION;
	bi->nr_vcpus = n;
	bi->workload = LHPVM_WORKLOAD_LOCK;
	bi->iterations = c->iters; /* 0: until bi->stop */
	bi->vcpu_blocks_gpa = (uintptr_t)blocks;
	bi->vcpu_block_size = LHPVM_VCPU_BLOCK_SIZE;
	bi->locks_gpa = (uintptr_t)slots;
	bi->nr_locks = c->locks;
	bi->lock_kind = c->kind;
	bi->cs_cycles = c->cs_cycles;
	bi->think_cycles = c->think_cycles;
	bi->spin_threshold = c->spin_threshold;
	bi->spin_threshold_head = c->spin_threshold_head;
	bi->p_ticket_shift = c->p_ticket_shift;
	bi->pv_steal = c->pv_steal;
	bi->pv_pending = c->pv_pending;
	bi->pv_prev_check = c->pv_prev_check;
	bi->pv_kick = c->pv_kick;
	bi->flags = c->flags;

	host_init(n);
	ignore_races = c->expect_fail;
	if (c->chaos) {
		struct sigaction sa = { 0 };

		sa.sa_handler = preempt_handler;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
	}
	pthread_barrier_init(&start_barrier, NULL, n + 1);
	pthread_barrier_init(&end_barrier, NULL, n + 1);
	for (uint32_t i = 0; i < n; i++)
		if (pthread_create(&tids[i], NULL, c->chaos ? chaos_vcpu_thread : vcpu_thread,
				   (void *)(uintptr_t)i)) {
			perror("pthread_create");
			return 2;
		}
	pthread_barrier_wait(&start_barrier);
	t0 = run_t0 = now_s();
	run_tsc0 = rdtsc_ordered();
	if (c->chaos && pthread_create(&chaos, NULL, chaos_thread, (void *)(uintptr_t)(n * 7919u + 1))) {
		perror("pthread_create");
		return 2;
	}

	/* Watch: the deadline (set stop once the minimum work is done: the
	 * threads leave between acquisitions, as in the VMM), lost wakeup,
	 * timeout. */
	last_wakes = __atomic_load_n(&host_wakes, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) < n) {
		uint32_t live, in_wait;
		uint64_t wakes;
		double t;

		usleep(10000);
		t = now_s() - t0;
		if (duration > 0 && !stopped && t >= duration) {
			struct progress pr = progress_now(n);

			if (!work_missing(c, &pr, whybuf, sizeof(whybuf))) {
				__atomic_store_n(&bi->stop, 1, __ATOMIC_RELEASE);
				stopped = true;
				t_stop = t;
			}
		}
		live = n - __atomic_load_n(&finished, __ATOMIC_SEQ_CST);
		in_wait = __atomic_load_n(&host_in_wait, __ATOMIC_SEQ_CST);
		wakes = __atomic_load_n(&host_wakes, __ATOMIC_SEQ_CST);
		stuck = (live > 0 && in_wait == live && wakes == last_wakes && !kicked_in_wait(n)) ? stuck + 1 : 0;
		last_wakes = wakes;
		if (stuck >= 50 || t > duration + c->timeout_s) {
			struct progress pr = progress_now(n);
			const char *missing = work_missing(c, &pr, whybuf, sizeof(whybuf));

			cfg_str(c, cs, sizeof(cs));
			if (stuck >= 50)
				printf("FAIL  %s: lost wakeup: every live thread is blocked in WAIT and none is left to KICK it\n",
				       cs);
			else if (stopped)
				printf("FAIL  %s: timeout: stopped at %.3fs, threads still running at %.3fs\n", cs,
				       t_stop, t);
			else if (duration > 0 && missing)
				printf("FAIL  %s: timeout: %.3fs past the deadline, the minimum work not done: %s\n", cs,
				       t - duration, missing);
			else
				printf("FAIL  %s: timeout: the run did not finish in %.3fs\n", cs, t);
			describe_threads(stdout);
			fflush(stdout);
			_exit(stuck >= 50 ? 2 : 3);
		}
	}
	if (c->chaos) {
		__atomic_store_n(&chaos_stop, 1, __ATOMIC_RELEASE);
		pthread_join(chaos, NULL);
	}
	pthread_barrier_wait(&end_barrier);
	elapsed = 0;
	for (uint32_t i = 0; i < n; i++) {
		pthread_join(tids[i], NULL);
		if (ends[i] - t0 > elapsed)
			elapsed = ends[i] - t0;
	}

	for (uint32_t i = 0; i < n; i++) {
		struct lhpvm_vcpu_page *p = page_of(i);

		if (rets[i] != 0)
			bad_ret++;
		acq += p->acquisitions;
		fails += p->check_failures;
		slow += p->slow_paths;
		waits += p->waits;
		kicks += p->kicks;
		yields += p->yields;
		wait_cycles += p->wait_cycles;
		spin_cycles += p->spin_cycles;
		steals += p->pv_lock_stealing;
		pendings += p->lock_pending;
		hashed += p->pv_hash_ops;
		kicks_recv += host_vcpus[i].kicks_received;
		wait_calls += host_vcpus[i].wait_calls;
		if (p->end_tsc < p->start_tsc && !why) {
			snprintf(whybuf, sizeof(whybuf), "vCPU %u: end_tsc before start_tsc", i);
			why = whybuf;
		}
		if (!c->expect_fail && !why && (p->lock_state != LHPVM_LOCK_STATE_NONE || p->in_cs != 0)) {
			snprintf(whybuf, sizeof(whybuf), "vCPU %u ended with lock_state %u in_cs %u", i,
				 p->lock_state, p->in_cs);
			why = whybuf;
		}
		if (!c->expect_fail && !why && p->ops != p->acquisitions) {
			snprintf(whybuf, sizeof(whybuf), "vCPU %u: ops %lu != acquisitions %lu", i,
				 p->ops, p->acquisitions);
			why = whybuf;
		}
	}
	for (uint32_t i = 0; i < nlocks; i++)
		counters += slots[i].counter;

	if (bad_ret && !why) {
		snprintf(whybuf, sizeof(whybuf), "%d threads returned non-zero", bad_ret);
		why = whybuf;
	}
	if (c->expect_fail) {
		/* Must be caught: a wrong counter or a failed owner check. */
		if (counters == acq && fails == 0 && !why) {
			why = "NOT CAUGHT: counter exact and no owner-check failure";
		}
	} else {
		/* Exact against what was done: all the iterations unless the
		 * deadline stopped the run, then at most that many each. */
		if (!why && !stopped && acq != (uint64_t)n * c->iters) {
			snprintf(whybuf, sizeof(whybuf), "acquisitions %lu != %u * %lu", acq, n, c->iters);
			why = whybuf;
		}
		for (uint32_t i = 0; i < n && !why && stopped && c->iters; i++)
			if (page_of(i)->acquisitions > c->iters) {
				snprintf(whybuf, sizeof(whybuf), "vCPU %u: %lu acquisitions, more than %lu",
					 i, page_of(i)->acquisitions, c->iters);
				why = whybuf;
			}
		if (!why && counters != acq) {
			snprintf(whybuf, sizeof(whybuf), "counters add up to %lu, acquisitions %lu", counters, acq);
			why = whybuf;
		}
		if (!why && fails) {
			snprintf(whybuf, sizeof(whybuf), "%lu owner-check failures", fails);
			why = whybuf;
		}
		for (uint32_t i = 0; i < nlocks && !why; i++) {
			const char *e = lock_left_free(c->kind, &slots[i]);

			if (e) {
				snprintf(whybuf, sizeof(whybuf), "slot %u after the run: %s", i, e);
				why = whybuf;
			}
		}
		if (!why && wait_cycles > spin_cycles) {
			snprintf(whybuf, sizeof(whybuf), "wait_cycles %lu > spin_cycles %lu (WAIT happens inside acquire)",
				 wait_cycles, spin_cycles);
			why = whybuf;
		}
		if (!why && (kicks != kicks_recv || waits != wait_calls)) {
			snprintf(whybuf, sizeof(whybuf), "page counters kicks %lu waits %lu, host saw %lu / %lu",
				 kicks, waits, kicks_recv, wait_calls);
			why = whybuf;
		}
		/* A time-bounded run stops only once these hold; a run that
		 * ran out of iterations first may still miss them. */
		if (!why && acq < c->min_acq) {
			snprintf(whybuf, sizeof(whybuf), "too short: %lu acquisitions (want >= %lu)", acq, c->min_acq);
			why = whybuf;
		}
		if (!why && (waits < c->min_waits || kicks < c->min_waits)) {
			snprintf(whybuf, sizeof(whybuf), "soak too gentle: %lu waits, %lu kicks (want >= %lu each)",
				 waits, kicks, c->min_waits);
			why = whybuf;
		}
	}

	if (stopped)
		snprintf(stopbuf, sizeof(stopbuf), " (stop at %.3fs)", t_stop);
	cfg_str(c, cs, sizeof(cs));
	printf("%s  %s: acq=%lu counter=%lu owner-fails=%lu slow=%lu waits=%lu kicks=%lu yields=%lu "
	       "steals=%lu pending=%lu hashed=%lu preemptions=%lu %.3fs%s %.0f acq/s%s%s\n",
	       why ? "FAIL" : "PASS", cs, acq, counters, fails, slow, waits, kicks, yields,
	       steals, pendings, hashed, chaos_preemptions, elapsed, stopbuf,
	       elapsed > 0 ? acq / elapsed : 0.0,
	       why ? ": " : (c->expect_fail ? ": caught" : ""), why ? why : "");
	fflush(stdout);
	return why ? 1 : 0;
}

/* ---- the driver -------------------------------------------------------------- */

static unsigned passed, failed;

static void run(struct cfg c)
{
	pid_t pid;
	int status;
	double deadline;
	char cs[256];

	cfg_str(&c, cs, sizeof(cs));
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0)
		exit(run_child(&c)); /* exit, not _exit: TSan's exit code */
	deadline = now_s() + c.duration_ms / 1e3 + c.timeout_s + 30;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			perror("waitpid");
			exit(2);
		}
		if (now_s() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			printf("FAIL  %s: killed, the run hung past its own watchdog\n", cs);
			failed++;
			return;
		}
		usleep(5000);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		passed++;
		return;
	}
	failed++;
	/* The child printed its own FAIL line for 1 (check), 2 (lost wakeup)
	 * and 3 (timeout). */
	if (WIFSIGNALED(status))
		printf("FAIL  %s: killed by signal %d\n", cs, WTERMSIG(status));
	else if (WEXITSTATUS(status) < 1 || WEXITSTATUS(status) > 3)
		printf("FAIL  %s: exit status %d%s\n", cs, WEXITSTATUS(status),
		       WEXITSTATUS(status) == 66 ? " (ThreadSanitizer reported a race)" :
		       WEXITSTATUS(status) == 4 ? " (GUEST_ASSERT)" : "");
}

static struct cfg with_lock(struct cfg c, const char *name)
{
	const struct lock_impl *l = lock_by_name(name);

	if (!l) {
		fprintf(stderr, "locktest: unknown lock %s\n", name);
		exit(2);
	}
	c.lock = l->name;
	c.kind = l->kind;
	return c;
}

/* --quick (for TSan, 5-15x slower): half the time, a quarter of the minimum
 * work (and of the soaks' minimum WAITs). */
static unsigned time_scale = 1, work_scale = 1;

/*
 * A suite case: time-bounded, ms long but at least min_acq acquisitions in
 * all, with no iteration cap. The durations size the suite (about 25 s of
 * runs, 12 s with --quick); each minimum is a few times less than what a
 * quiet 2-CPU machine does in that time, so that with a CPU kept busy it
 * still comes within seconds, far below the 60 s timeout.
 */
static struct cfg timed(struct cfg c, uint64_t ms, uint64_t min_acq)
{
	c.iters = 0;
	c.duration_ms = ms / time_scale;
	c.min_acq = min_acq / work_scale;
	return c;
}

/* The suite `make check` runs. */
static void suite(void)
{
	static const uint32_t nthreads[] = { 1, 2, 4, 8 };
	struct cfg c;

	/* Every lock, 1/2/4/8 threads, short runs. */
	for (size_t i = 0; i < NGOOD; i++)
		for (size_t t = 0; t < sizeof(nthreads) / sizeof(nthreads[0]); t++) {
			c = with_lock(defaults, good_locks[i]);
			c.threads = nthreads[t];
			c = timed(c, 150, 250 * c.threads);
			run(c);
		}

	/* pv soak: spin threshold 1 and 64, nearly every contended acquisition
	 * takes the slow path; thousands of WAIT/KICK round trips. pvqspin
	 * without stealing, which would otherwise take most of them out of the
	 * queue (its stealing runs in the knob suite below). */
	for (size_t i = 0; i < 2; i++)
		for (uint64_t thr = 1; thr <= 64; thr *= 64)
			for (uint32_t n = 2; n <= 8; n *= 2) {
				c = with_lock(defaults, i == 0 ? "pvticket" : "pvqspin");
				c.threads = n;
				c.spin_threshold = thr;
				c.spin_threshold_head = thr;
				c.pv_steal = LHPVM_PV_STEAL_OFF;
				c = timed(c, 200, 1000);
				c.cs_cycles = 20000; /* ~8 us: 64 spins never cover it */
				c.think_cycles = 0;
				c.min_waits = 1000 / work_scale;
				run(c);
			}

	/* Fence stress: no CS, no think, spin threshold 1 - WAIT/KICK races
	 * as tight as they get. Dropping either side's store->load fence of
	 * pvticket or pvqspin makes these lose a wakeup within ~1e5
	 * acquisitions (checked by mutating a copy; 750 ms is 1e5 or more on a
	 * quiet machine, the minimum 2e4 on any). */
	for (size_t i = 0; i < 2; i++)
		for (uint32_t n = 2; n <= 3; n++) {
			c = with_lock(defaults, i == 0 ? "pvticket" : "pvqspin");
			c.threads = n;
			c.spin_threshold = 1;
			c = timed(c, 750, 20000);
			c.cs_cycles = 0;
			c.think_cycles = 0;
			/* No WAIT minimum: how often the two race depends on
			 * what else the host runs; the soak above has one. */
			run(c);
		}

	/* Options: delay hint + preempted-aware under simulated preemption. */
	for (size_t i = 0; i < NGOOD; i++) {
		c = with_lock(defaults, good_locks[i]);
		c.threads = 4;
		c = timed(c, 150, 1000);
		c.spin_threshold = 256;
		c.p_ticket_shift = 8;
		c.cs_cycles = 1000;
		c.flags = LHPVM_FLAG_DELAY_HINT | LHPVM_FLAG_PREEMPTED_AWARE;
		c.chaos = true;
		run(c);
	}
	/* Simulated preemption without the hints: pticket must keep moving,
	 * the pv locks must not lose wakeups. */
	for (size_t i = 0; i < 3; i++) {
		c = with_lock(defaults, (const char *[]){ "pticket", "pvticket", "pvqspin" }[i]);
		c.threads = 8;
		c = timed(c, 200, 1000);
		c.spin_threshold = 1024;
		c.p_ticket_shift = 10;
		c.chaos = true;
		run(c);
	}
	/* Several locks: vCPU id % nr_locks picks the slot. */
	for (size_t i = 0; i < 3; i++) {
		c = with_lock(defaults, (const char *[]){ "mcs", "pvticket", "pvqspin" }[i]);
		c.threads = 8;
		c.locks = 3;
		c = timed(c, 200, 1000);
		c.spin_threshold = 64;
		run(c);
	}

	/* pvqspin: every knob combination (3 steal x 2 pending x 3 prev-check
	 * x 2 kick), with a short queue-head threshold so the head's hash and
	 * Q_SLOW path runs too, under simulated preemption inside lock/unlock. */
	for (uint32_t st = 0; st < 3; st++)
		for (uint32_t pe = 0; pe < 2; pe++)
			for (uint32_t pc = 0; pc < 3; pc++)
				for (uint32_t k = 0; k < 2; k++) {
					c = with_lock(defaults, "pvqspin");
					c.threads = 4;
					c = timed(c, 100, 1000);
					c.spin_threshold = 512;
					c.spin_threshold_head = 64;
					c.cs_cycles = 2000;
					c.pv_steal = st;
					c.pv_pending = pe;
					c.pv_prev_check = pc;
					c.pv_kick = k;
					c.chaos = true;
					run(c);
				}
	/* The same protocol races as tight as they get, per kick mode and
	 * without stealing (every hand-over through the queue). */
	for (uint32_t k = 0; k < 2; k++)
		for (uint32_t st = 0; st < 2; st++) {
			c = with_lock(defaults, "pvqspin");
			c.threads = 3;
			c.spin_threshold = 1;
			c.spin_threshold_head = 1;
			c = timed(c, 750, 20000);
			c.cs_cycles = 0;
			c.think_cycles = 0;
			c.pv_kick = k;
			c.pv_steal = st;
			run(c);
		}
	/* qspinlock's pending fast path against its queue: two and three
	 * threads, no CS, no think. The case of the timeouts on a busy
	 * machine: three threads do some 7e4 acquisitions in 1.5 s, but with a
	 * CPU kept busy as few as 650 a second, hence the low minimum. */
	for (uint32_t n = 2; n <= 3; n++) {
		c = with_lock(defaults, "qspinlock");
		c.threads = n;
		c = timed(c, 1500, 3000);
		c.cs_cycles = 0;
		c.think_cycles = 0;
		run(c);
	}

	/* The broken lock must be caught. */
	for (uint32_t n = 2; n <= 4; n *= 2) {
		c = with_lock(defaults, "broken");
		c.threads = n;
		c = timed(c, 100, 1000);
		c.cs_cycles = 500;
		c.expect_fail = true;
		run(c);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: locktest [--quick]                 run the check suite\n"
		"       locktest --lock NAME [options]     one run\n"
		"options: --threads N (4)  --spin-threshold N (0: 1<<15)\n"
		"         --cs-cycles N (200)  --think-cycles N (200)  --locks N (1)\n"
		"         --delay-hint  --preempted-aware  --chaos  --expect-fail\n"
		"size:    --duration MS (1000): stop the threads MS after the start, once\n"
		"           --min-acq N acquisitions (0) and --min-waits N WAITs and KICKs\n"
		"           (0) are done (an --expect-fail run: and a failed owner check)\n"
		"         --iters N: alone, exactly N acquisitions per thread (no deadline);\n"
		"           with --duration, at most N\n"
		"         --timeout SECONDS (60): hang detector, fail a run going this long\n"
		"           past its deadline (iteration-sized: past its start)\n"
		"pvqspin: --pv-steal hybrid|off|once  --pv-pending on|off\n"
		"         --pv-prev-check node|off|preempted  --pv-kick deferred|immediate\n"
		"         --spin-threshold-head N (0: the spin threshold)\n"
		"pticket: --pticket-timeout-shift N (0: 14): timeout unit 1<<N spins\n"
		"locks: tas ttas ticket mcs pvticket pvqspin spinyield pticket qspinlock virt broken\n");
}

static uint32_t knob(const char *v, const char *const *names, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	fprintf(stderr, "locktest: bad knob value %s\n", v);
	exit(2);
}

int main(int argc, char **argv)
{
	struct cfg c = defaults;
	bool one = false, iters_given = false, duration_given = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(name, field)                                                      \
	if (strcmp(a, name) == 0 && v) {                                      \
		c.field = strtoull(v, NULL, 0);                               \
		i++;                                                          \
		continue;                                                     \
	}
		NUM("--threads", threads)
		NUM("--min-acq", min_acq)
		NUM("--spin-threshold", spin_threshold)
		NUM("--cs-cycles", cs_cycles)
		NUM("--think-cycles", think_cycles)
		NUM("--locks", locks)
		NUM("--min-waits", min_waits)
		NUM("--spin-threshold-head", spin_threshold_head)
		NUM("--pticket-timeout-shift", p_ticket_shift)
#undef NUM
		if (strcmp(a, "--iters") == 0 && v) {
			c.iters = strtoull(v, NULL, 0);
			iters_given = true;
			i++;
		} else if (strcmp(a, "--duration") == 0 && v) {
			c.duration_ms = strtoull(v, NULL, 0);
			duration_given = true;
			i++;
		} else if (strcmp(a, "--lock") == 0 && v) {
			c = with_lock(c, v);
			one = true;
			i++;
		} else if (strcmp(a, "--pv-steal") == 0 && v) {
			c.pv_steal = knob(v, steal_names, 3);
			i++;
		} else if (strcmp(a, "--pv-pending") == 0 && v) {
			c.pv_pending = knob(v, pending_names, 2);
			i++;
		} else if (strcmp(a, "--pv-prev-check") == 0 && v) {
			c.pv_prev_check = knob(v, prev_check_names, 3);
			i++;
		} else if (strcmp(a, "--pv-kick") == 0 && v) {
			c.pv_kick = knob(v, kick_names, 2);
			i++;
		} else if (strcmp(a, "--timeout") == 0 && v) {
			c.timeout_s = strtod(v, NULL);
			i++;
		} else if (strcmp(a, "--delay-hint") == 0) {
			c.flags |= LHPVM_FLAG_DELAY_HINT;
		} else if (strcmp(a, "--preempted-aware") == 0) {
			c.flags |= LHPVM_FLAG_PREEMPTED_AWARE;
		} else if (strcmp(a, "--chaos") == 0) {
			c.chaos = true;
		} else if (strcmp(a, "--expect-fail") == 0) {
			c.expect_fail = true;
		} else if (strcmp(a, "--quick") == 0) {
			time_scale = 2;
			work_scale = 4;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (c.threads < 1 || c.threads > LHPVM_MAX_VCPUS || c.locks > LHPVM_MAX_LOCKS) {
		fprintf(stderr, "locktest: bad --threads or --locks\n");
		return 2;
	}
	/* --iters alone: an iteration-sized run, exactly that many each. */
	if (iters_given && !duration_given)
		c.duration_ms = 0;
	if (c.iters == 0 && c.duration_ms == 0) {
		fprintf(stderr, "locktest: a run needs --iters or --duration\n");
		return 2;
	}

	if (one)
		run(c);
	else
		suite();
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
