/*
 * lhpvm_host.h - the platform layer that lets the guest's lock files and
 * lockbench.c run as host threads (built with -DLHPVM_HOSTTEST; lock.h
 * includes this instead of guest.h).
 *
 * One thread per "vCPU". Guest physical addresses are host pointers (the
 * guest is identity mapped too). WAIT/KICK are futexes with the VMM's
 * semantics (host.c); YIELD is sched_yield. Only what lock.h documents as
 * the lock files' runtime is provided here.
 */
#ifndef LHPVM_HOST_H
#define LHPVM_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lhpvm_abi.h"

#define GUEST_NOINLINE __attribute__((noinline))
#define GUEST_UNUSED __attribute__((unused))
/* No section placement on the host; keep the functions whole all the same. */
#define GUEST_SPIN_TEXT __attribute__((noipa))
#define GUEST_CS_TEXT __attribute__((noipa))

static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/*
 * PAUSE, plus a sched_yield every 1024 calls. The host is not a hypervisor:
 * with more threads than CPUs, a FIFO lock handed to a descheduled waiter
 * would otherwise stall everyone for a whole host time slice per hand-over,
 * and an 8-thread run on 2 CPUs would take minutes instead of a second.
 */
extern __thread uint32_t host_relax_count;
void host_relax_yield(void);

static inline void cpu_relax(void)
{
	__asm__ __volatile__("pause" : : : "memory");
	if ((++host_relax_count & 1023) == 0)
		host_relax_yield();
}

/* The guest's console: lines the lock code prints (a failed owner check)
 * come out indented and tagged with the vCPU, under the driver's lines. */
int host_console_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#ifndef LOCKTEST_DRIVER
#define printf host_console_printf
#endif

/* host.c: the hypercalls, with the VMM's results (LHPVM_WAIT_*, LHPVM_ERR_*). */
int64_t hc_kick(uint64_t vcpu);
int64_t hc_wait(const volatile uint32_t *word, uint32_t expected);
int64_t hc_yield(uint64_t vcpu);

static inline int stop_requested(const struct lhpvm_boot_info *bi)
{
	return __atomic_load_n(&bi->stop, __ATOMIC_RELAXED) != 0;
}

static inline struct lhpvm_lock_slot *lock_slots(const struct lhpvm_boot_info *bi)
{
	return (struct lhpvm_lock_slot *)(uintptr_t)bi->locks_gpa;
}

_Noreturn void host_assert_fail(const char *file, int line, const char *expr);

#define GUEST_ASSERT(cond)                                                   \
	do {                                                                 \
		if (__builtin_expect(!(cond), 0))                            \
			host_assert_fail(__FILE__, __LINE__, #cond);         \
	} while (0)

#endif /* LHPVM_HOST_H */
