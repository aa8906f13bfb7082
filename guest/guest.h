/*
 * guest.h - the guest's small runtime: hypercalls, TSC, printf, asserts.
 *
 * Everything here runs in ring 3 (the workloads never enter ring 0 after
 * boot). Guest memory is identity mapped, so a pointer is its own GPA.
 */
#ifndef LHPVM_GUEST_H
#define LHPVM_GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "lhpvm_abi.h"
#include "layout.h"

#define GUEST_NOINLINE __attribute__((noinline))
#define GUEST_UNUSED __attribute__((unused))
#define GUEST_PRINTF(f, a) __attribute__((format(printf, f, a)))

/*
 * Code placement for the host's symbol-range lookups (see guest.lds):
 * GUEST_SPIN_TEXT for lock-wait spin loops, GUEST_CS_TEXT for functions that
 * acquire a lock, run the critical section and release it. noipa keeps each
 * such function a single, uncloned, un-inlined symbol in its section.
 */
#define GUEST_SPIN_TEXT __attribute__((noipa, section(".text.lhpvm_spin")))
#define GUEST_CS_TEXT __attribute__((noipa, section(".text.lhpvm_cs")))

/* ---- CPU helpers -------------------------------------------------------- */

/*
 * The vCPU page of the running vCPU. Both the ring-3 and the ring-0 stacks
 * lie inside this vCPU's block, which is LHPVM_VCPU_BLOCK_SIZE-aligned and
 * starts with the page, so masking RSP finds it: no globals (the image is
 * shared by all vCPUs), no segment bases (setting them needs ring 0).
 */
static inline struct lhpvm_vcpu_page *this_page(void)
{
	uintptr_t sp;

	__asm__("movq %%rsp, %0" : "=r"(sp));
	return (struct lhpvm_vcpu_page *)(sp & ~(uintptr_t)(LHPVM_VCPU_BLOCK_SIZE - 1));
}

/* TSC read that does not move before earlier loads (monotonic across vCPUs). */
static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* Spin-wait hint. Also a compiler barrier, so polled loads are redone. */
static inline void cpu_relax(void)
{
	__asm__ __volatile__("pause" : : : "memory");
}

/* ---- hypercalls --------------------------------------------------------- */

/*
 * Ring the doorbell: exactly one 8-byte store of the call number. When the
 * store retires the VMM has handled the call and written page->ret.
 * The doorbell is above 2 GiB, so its address goes through a register.
 */
static inline void lhpvm_doorbell(uint64_t nr)
{
	__asm__ __volatile__("movq %0, (%1)"
			     :
			     : "er"(nr), "r"((uintptr_t)LHPVM_DOORBELL_GPA)
			     : "memory");
}

/* Result of the call just made on this vCPU (written by the VMM). */
static inline int64_t lhpvm_ret(struct lhpvm_vcpu_page *p)
{
	return *(volatile int64_t *)&p->ret;
}

static inline int64_t lhpvm_hypercall0(uint64_t nr)
{
	struct lhpvm_vcpu_page *p = this_page();

	lhpvm_doorbell(nr);
	return lhpvm_ret(p);
}

static inline int64_t lhpvm_hypercall1(uint64_t nr, uint64_t a0)
{
	struct lhpvm_vcpu_page *p = this_page();

	*(volatile uint64_t *)&p->args[0] = a0;
	lhpvm_doorbell(nr);
	return lhpvm_ret(p);
}

static inline int64_t lhpvm_hypercall2(uint64_t nr, uint64_t a0, uint64_t a1)
{
	struct lhpvm_vcpu_page *p = this_page();

	*(volatile uint64_t *)&p->args[0] = a0;
	*(volatile uint64_t *)&p->args[1] = a1;
	lhpvm_doorbell(nr);
	return lhpvm_ret(p);
}

static inline int64_t hc_null(void)
{
	return lhpvm_hypercall0(LHPVM_CALL_NULL);
}

/* EXIT never returns; if a VMM bug lets it, ud2 turns that into a #UD report. */
static inline _Noreturn void hc_exit(uint64_t code)
{
	lhpvm_hypercall1(LHPVM_CALL_EXIT, code);
	__builtin_trap();
}

static inline int64_t hc_print(const void *buf, uint64_t len)
{
	return lhpvm_hypercall2(LHPVM_CALL_PRINT, (uintptr_t)buf, len);
}

static inline int64_t hc_kick(uint64_t vcpu)
{
	return lhpvm_hypercall1(LHPVM_CALL_KICK, vcpu);
}

/* Block while *word == expected and no kick is pending: LHPVM_WAIT_* or < 0. */
static inline int64_t hc_wait(const volatile uint32_t *word, uint32_t expected)
{
	return lhpvm_hypercall2(LHPVM_CALL_WAIT, (uintptr_t)word, expected);
}

static inline int64_t hc_yield(uint64_t vcpu)
{
	return lhpvm_hypercall1(LHPVM_CALL_YIELD, vcpu);
}

/* ---- boot info helpers -------------------------------------------------- */

/* The VMM sets bi->stop while the guest runs: always re-read it. */
static inline int stop_requested(const struct lhpvm_boot_info *bi)
{
	return *(const volatile uint32_t *)&bi->stop != 0;
}

static inline struct lhpvm_lock_slot *lock_slots(const struct lhpvm_boot_info *bi)
{
	return (struct lhpvm_lock_slot *)(uintptr_t)bi->locks_gpa;
}

/* ---- lib.c -------------------------------------------------------------- */

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) GUEST_PRINTF(3, 0);
int snprintf(char *buf, size_t size, const char *fmt, ...) GUEST_PRINTF(3, 4);
/* Formats into a per-call buffer and emits it with ONE PRINT hypercall
 * (truncated to LHPVM_MAX_PRINT_LEN bytes). Returns the untruncated length. */
int printf(const char *fmt, ...) GUEST_PRINTF(1, 2);

/* gcc may emit calls to these even with -ffreestanding -fno-builtin. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Exit code of a failed GUEST_ASSERT. */
#define GUEST_ASSERT_EXIT 0xA55E

_Noreturn void guest_assert_fail(const char *file, int line, const char *expr);

#define GUEST_ASSERT(cond)                                                   \
	do {                                                                 \
		if (__builtin_expect(!(cond), 0))                            \
			guest_assert_fail(__FILE__, __LINE__, #cond);        \
	} while (0)

/* ---- workloads (bench.c, lockbench.c, misbehave.c) ---------------------- */

/* Each returns the EXIT code of this vCPU (0 = success). */
typedef int workload_fn(struct lhpvm_boot_info *bi, uint32_t id,
			struct lhpvm_vcpu_page *page);

workload_fn workload_hello;
workload_fn workload_counter;
workload_fn workload_null;
workload_fn workload_lock; /* lockbench.c */
workload_fn workload_hog;
workload_fn workload_spin;
workload_fn workload_fault_gp;
workload_fn workload_fault_pf;
workload_fn workload_fault_triple;
workload_fn workload_hostile;
workload_fn workload_wait_forever;
workload_fn workload_syscall_write;
workload_fn workload_syscall_open;
workload_fn workload_syscall_execve;
workload_fn workload_syscall_int80;
workload_fn workload_code;

/* The IDT (boot.S); only fault_triple touches it from C. */
extern uint8_t lhpvm_idt[IDT_BYTES];

#endif /* LHPVM_GUEST_H */
