/*
 * host.c - WAIT / KICK / YIELD for the host harness, with the VMM's
 * semantics (vmm/hypercalls.go):
 *   KICK(v):  leave a pending kick for v and wake it if it sleeps.
 *   WAIT(a, e): return LHPVM_WAIT_KICK_PENDING at once (consuming the kick)
 *             if a kick is pending; LHPVM_WAIT_VALUE_CHANGE if *a != e;
 *             else sleep until a KICK (LHPVM_WAIT_WOKEN; spurious returns
 *             allowed, e.g. on a signal).
 * A KICK bumps v's futex sequence word after setting kick_pending; WAIT
 * reads the sequence first and sleeps only while it is unchanged, so a KICK
 * between WAIT's checks and its sleep makes FUTEX_WAIT return at once:
 * never lost.
 */
#define _GNU_SOURCE
#define LOCKTEST_DRIVER /* the real printf here */
#include <errno.h>
#include <stdarg.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lhpvm_host.h"
#include "host.h"

struct host_vcpu *host_vcpus;
uint32_t host_nr_vcpus;
uint32_t host_in_wait;
uint64_t host_wakes;

static __thread int host_self = -1;
__thread uint32_t host_relax_count;

void host_init(uint32_t n)
{
	host_vcpus = aligned_alloc(64, sizeof(*host_vcpus) * n);
	if (!host_vcpus) {
		perror("aligned_alloc");
		exit(2);
	}
	for (uint32_t i = 0; i < n; i++)
		host_vcpus[i] = (struct host_vcpu){ 0 };
	host_nr_vcpus = n;
}

void host_bind_self(uint32_t id)
{
	host_self = (int)id;
}

void host_relax_yield(void)
{
	sched_yield();
}

_Noreturn void host_assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "GUEST_ASSERT failed (vCPU %d): %s:%d: %s\n", host_self, file, line, expr);
	fflush(NULL);
	_exit(4);
}

int host_console_printf(const char *fmt, ...)
{
	char buf[LHPVM_MAX_PRINT_LEN + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("      [vCPU %d] %s", host_self, buf);
	return n;
}

static long futex(uint32_t *uaddr, int op, uint32_t val)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

int64_t hc_kick(uint64_t vcpu)
{
	struct host_vcpu *v;

	if (vcpu >= host_nr_vcpus)
		return LHPVM_ERR_INVAL;
	v = &host_vcpus[vcpu];
	__atomic_fetch_add(&v->kicks_received, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&v->kick_pending, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&v->seq, 1, __ATOMIC_SEQ_CST);
	futex(&v->seq, FUTEX_WAKE_PRIVATE, 1);
	return 0;
}

int64_t hc_wait(const volatile uint32_t *word, uint32_t expected)
{
	struct host_vcpu *v;
	uint32_t seq;

	if (host_self < 0 || ((uintptr_t)word & 3) || !word)
		return LHPVM_ERR_FAULT;
	v = &host_vcpus[host_self];
	__atomic_fetch_add(&v->wait_calls, 1, __ATOMIC_RELAXED);
	seq = __atomic_load_n(&v->seq, __ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&v->kick_pending, 0, __ATOMIC_SEQ_CST))
		return LHPVM_WAIT_KICK_PENDING;
	if (__atomic_load_n((const uint32_t *)word, __ATOMIC_SEQ_CST) != expected)
		return LHPVM_WAIT_VALUE_CHANGE;

	__atomic_store_n(&v->wait_val, expected, __ATOMIC_RELAXED);
	__atomic_store_n(&v->wait_addr, (uint64_t)(uintptr_t)word, __ATOMIC_RELAXED);
	__atomic_fetch_add(&host_in_wait, 1, __ATOMIC_SEQ_CST);
	/* Sleeps only while seq is unchanged: a KICK since our read of seq
	 * (and so since our check of kick_pending) makes this return at once. */
	while (__atomic_load_n(&v->seq, __ATOMIC_SEQ_CST) == seq &&
	       !__atomic_load_n(&v->kick_pending, __ATOMIC_SEQ_CST)) {
		if (futex(&v->seq, FUTEX_WAIT_PRIVATE, seq) < 0 && errno == EINTR)
			break; /* a signal (simulated preemption): a spurious wakeup */
	}
	__atomic_fetch_sub(&host_in_wait, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&v->wait_addr, 0, __ATOMIC_RELAXED);
	__atomic_fetch_add(&host_wakes, 1, __ATOMIC_SEQ_CST);
	/* Consume the kick that woke us, as the VMM does. */
	__atomic_exchange_n(&v->kick_pending, 0, __ATOMIC_SEQ_CST);
	return LHPVM_WAIT_WOKEN;
}

int64_t hc_yield(uint64_t vcpu)
{
	if (vcpu != LHPVM_YIELD_ANY && vcpu >= host_nr_vcpus)
		return LHPVM_ERR_INVAL;
	sched_yield();
	return 0;
}
