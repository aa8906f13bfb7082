/*
 * misbehave.c - test workloads that misbehave on purpose: runaway spinning,
 * faults, a triple fault, bad hypercalls, a lost wakeup, host system calls,
 * and whatever machine code a fuzzer hands the VMM.
 */
#include "guest.h"

/* ---- spin --------------------------------------------------------------- */

/* A runaway vCPU: never exits, never looks at stop. Only the host's watchdog
 * can end it. Not in the lock-spin range: it waits for nothing. */
static GUEST_NOINLINE _Noreturn void spin_forever(void)
{
	for (;;)
		cpu_relax();
}

int workload_spin(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	spin_forever();
}

/* ---- faults ------------------------------------------------------------- */

/*
 * The faulting instruction hands control to isr_common (ring 0), which
 * reports it with FAULT and never comes back. Falling through means the
 * fault did not happen: say so and fail.
 */
static int fault_missed(const char *what)
{
	printf("%s: the fault did not happen\n", what);
	return 1;
}

int workload_fault_gp(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	/* hlt is privileged: #GP(0) at CPL 3. */
	__asm__ __volatile__("hlt" : : : "memory");
	return fault_missed("fault_gp");
}

int workload_fault_pf(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	/* Not mapped by the VMM's page tables: #PF, CR2 = this address.
	 * (asm, not a C store, so gcc does not reason about the constant.) */
	__asm__ __volatile__("movl $0xdead, (%0)"
			     :
			     : "r"((uintptr_t)LHPVM_FAULT_UNMAPPED_GPA)
			     : "memory");
	return fault_missed("fault_pf");
}

int workload_fault_triple(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	/*
	 * The IDT is ordinary RAM, reachable from ring 3 through the identity
	 * map. With every gate not present, #UD becomes #GP (bad gate), that
	 * becomes #DF, and a not-present #DF gate is a triple fault. The IDT is
	 * never rewritten after the build, so a vCPU booting later does not
	 * repair it under our feet.
	 */
	memset(lhpvm_idt, 0, IDT_BYTES);
	__asm__ __volatile__("ud2" : : : "memory");
	return fault_missed("fault_triple");
}

/* ---- hostile ------------------------------------------------------------ */

/* Written to page->ret before each call, so a VMM that forgets to write the
 * result cannot pass a check with a stale value. */
#define RET_SENTINEL ((int64_t)0x5eadbeef5eadbeefLL)

struct hostile {
	struct lhpvm_vcpu_page *page;
	uint64_t calls;
	uint64_t failures;
};

static void expect(struct hostile *h, const char *what, int64_t got, int64_t want)
{
	if (got == want)
		return;
	h->failures++;
	printf("hostile: %s: got %ld (0x%lx), want %ld\n", what, got, (uint64_t)got, want);
}

/* One hostile hypercall, counted, with the sentinel in ret. */
static int64_t hostile_call(struct hostile *h, uint64_t nr, uint64_t a0, uint64_t a1)
{
	h->calls++;
	*(volatile int64_t *)&h->page->ret = RET_SENTINEL;
	return lhpvm_hypercall2(nr, a0, a1);
}

int workload_hostile(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	struct hostile h = { page, 0, 0 };
	const uint64_t mem = bi->mem_bytes;
	const uintptr_t doorbell = LHPVM_DOORBELL_GPA;
	volatile uint32_t word = 7;
	int64_t r;
	uint64_t v;

	page->start_tsc = rdtsc_ordered();

	expect(&h, "unknown call 999",
	       hostile_call(&h, 999, 0, 0), LHPVM_ERR_NO_SYS);
	expect(&h, "PRINT gpa beyond RAM",
	       hostile_call(&h, LHPVM_CALL_PRINT, mem + 4096, 16), LHPVM_ERR_FAULT);
	expect(&h, "PRINT len MAX_PRINT_LEN+1",
	       hostile_call(&h, LHPVM_CALL_PRINT, (uintptr_t)bi, LHPVM_MAX_PRINT_LEN + 1),
	       LHPVM_ERR_INVAL);
	expect(&h, "PRINT gpa+len wraps",
	       hostile_call(&h, LHPVM_CALL_PRINT, 0xffffffffffffff00ULL, 0x200), LHPVM_ERR_FAULT);
	expect(&h, "KICK nr_vcpus",
	       hostile_call(&h, LHPVM_CALL_KICK, bi->nr_vcpus, 0), LHPVM_ERR_INVAL);
	expect(&h, "KICK ~0",
	       hostile_call(&h, LHPVM_CALL_KICK, 0xffffffffffffffffULL, 0), LHPVM_ERR_INVAL);
	expect(&h, "WAIT misaligned",
	       hostile_call(&h, LHPVM_CALL_WAIT, (uintptr_t)&word + 1, 7), LHPVM_ERR_FAULT);
	expect(&h, "WAIT gpa = mem_bytes",
	       hostile_call(&h, LHPVM_CALL_WAIT, mem, 0), LHPVM_ERR_FAULT);
	expect(&h, "YIELD nr_vcpus+5",
	       hostile_call(&h, LHPVM_CALL_YIELD, (uint64_t)bi->nr_vcpus + 5, 0), LHPVM_ERR_INVAL);

	/* The futex rule: no blocking when the value already differs... */
	expect(&h, "WAIT value 7, expected 8",
	       hostile_call(&h, LHPVM_CALL_WAIT, (uintptr_t)&word, 8), LHPVM_WAIT_VALUE_CHANGE);
	/* ...or when a kick is already pending (this one must not block). */
	expect(&h, "KICK self",
	       hostile_call(&h, LHPVM_CALL_KICK, id, 0), 0);
	expect(&h, "WAIT after KICK self",
	       hostile_call(&h, LHPVM_CALL_WAIT, (uintptr_t)&word, 7), LHPVM_WAIT_KICK_PENDING);

	/* A 4-byte doorbell write (of CALL_NULL, which would return 0 if the
	 * VMM accepted it) must be refused with ERR_INVAL. */
	h.calls++;
	*(volatile int64_t *)&page->ret = RET_SENTINEL;
	__asm__ __volatile__("movl %0, (%1)"
			     :
			     : "r"((uint32_t)LHPVM_CALL_NULL), "r"(doorbell)
			     : "memory");
	r = lhpvm_ret(page);
	expect(&h, "4-byte doorbell write", r, LHPVM_ERR_INVAL);

	/* Reading the doorbell returns all ones. */
	h.calls++;
	__asm__ __volatile__("movq (%1), %0" : "=r"(v) : "r"(doorbell) : "memory");
	expect(&h, "8-byte doorbell read", (int64_t)v, -1);

	page->end_tsc = rdtsc_ordered();
	page->result = h.calls;
	page->check_failures = h.failures;
	page->ops = h.calls;
	return h.failures ? 1 : 0;
}

/* ---- wait_forever ------------------------------------------------------- */

/*
 * WAIT on a word nobody will ever change or kick: a lost wakeup on purpose.
 * Any return (spurious wake, error) just waits again.
 */
int workload_wait_forever(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	volatile uint32_t word = 0;

	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	for (;;) {
		hc_wait(&word, 0);
		*(volatile uint64_t *)&page->waits += 1;
	}
}

/* ---- host syscalls ------------------------------------------------------ */

/*
 * A guest that tries to reach the host kernel directly. On KVM `syscall` is
 * #UD (EFER.SCE is off) and `int $0x80` is #GP (no gate for vector 0x80);
 * on ptrace the stub's seccomp filter traps every call before it runs. So
 * none of these may ever return; if one does, say so and fail.
 */
static long raw_syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ __volatile__("syscall"
			     : "=a"(ret)
			     : "a"(nr), "D"(a), "S"(b), "d"(c)
			     : "rcx", "r11", "memory");
	return ret;
}

static int escaped(const char *what, long ret)
{
	printf("%s: the host performed it (returned %ld)\n", what, ret);
	return 1;
}

int workload_syscall_write(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	static const char msg[] = "lhpvm guest: escaped through write(2)\n";

	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	return escaped("write", raw_syscall3(1 /* __NR_write */, 1, (long)msg, sizeof(msg) - 1));
}

int workload_syscall_open(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	long r;

	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	/* openat(AT_FDCWD, path, O_WRONLY | O_CREAT, 0644) */
	r = raw_syscall3(257 /* __NR_openat */, -100, (long)LHPVM_ESCAPE_PATH, 01 | 0100);
	if (r >= 0)
		return escaped("openat", r);
	return escaped("creat", raw_syscall3(85 /* __NR_creat */, (long)LHPVM_ESCAPE_PATH, 0644, 0));
}

int workload_syscall_execve(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	const char *argv[] = { "sh", "-c", "touch " LHPVM_ESCAPE_PATH, 0 };

	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	return escaped("execve", raw_syscall3(59 /* __NR_execve */, (long)"/bin/sh", (long)argv, 0));
}

int workload_syscall_int80(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	long ret;

	(void)bi;
	(void)id;
	page->start_tsc = rdtsc_ordered();
	/* i386 creat(path, 0644): EBX and ECX carry the arguments, 32 bits
	 * each; the path lies below 4 GiB like all of guest RAM. */
	__asm__ __volatile__("int $0x80"
			     : "=a"(ret)
			     : "a"(8 /* __NR_creat, i386 */), "b"((uint32_t)(uintptr_t)LHPVM_ESCAPE_PATH), "c"(0644)
			     : "memory");
	return escaped("int $0x80 creat", ret);
}

/* ---- code --------------------------------------------------------------- */

/*
 * call_code(bi, id, page, code): call the code with RDI, RSI, RDX as given,
 * every other register but RSP zero (so a run depends on the code alone),
 * and return if it does. The SysV callee-saved registers are restored, and
 * DF cleared, for the C code after it; nothing else of the caller survives
 * a call that does not come back, and nothing needs to.
 */
void call_code(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page, uintptr_t code);
__asm__(".text\n"
	".globl call_code\n"
	".type call_code, @function\n"
	"call_code:\n"
	"	pushq %rbx\n"
	"	pushq %rbp\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	movq %rcx, %r11\n"
	"	xorl %eax, %eax\n"
	"	xorl %ebx, %ebx\n"
	"	xorl %ecx, %ecx\n"
	"	xorl %ebp, %ebp\n"
	"	xorl %r8d, %r8d\n"
	"	xorl %r9d, %r9d\n"
	"	xorl %r10d, %r10d\n"
	"	xorl %r12d, %r12d\n"
	"	xorl %r13d, %r13d\n"
	"	xorl %r14d, %r14d\n"
	"	xorl %r15d, %r15d\n"
	"	pushq %r11\n"
	"	xorl %r11d, %r11d\n"
	"	call *(%rsp)\n"
	"	addq $8, %rsp\n"
	"	cld\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbp\n"
	"	popq %rbx\n"
	"	ret\n"
	".size call_code, . - call_code\n");

/*
 * Every vCPU calls the code the VMM copied into its page at bi->code_gpa
 * (the rest of the page is int3, so running off its end is a #BP), and
 * EXITs 0 if it returns. What the code does - fault, make host system
 * calls, ring the doorbell any way it likes, overwrite the guest - is the
 * VMM's to survive.
 */
int workload_code(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	uint64_t code = bi->code_gpa;

	if (code == 0 || code % LHPVM_PAGE_SIZE != 0 || code >= bi->mem_bytes ||
	    bi->code_len > LHPVM_MAX_CODE_LEN) {
		printf("code: bad code page 0x%lx (%lu bytes)\n", code, bi->code_len);
		return 2;
	}
	page->start_tsc = rdtsc_ordered();
	call_code(bi, id, page, (uintptr_t)code);
	/* The code may have moved RSP: find the page from bi, not the stack. */
	page = (struct lhpvm_vcpu_page *)(bi->vcpu_blocks_gpa + (uint64_t)id * LHPVM_VCPU_BLOCK_SIZE);
	page->end_tsc = rdtsc_ordered();
	page->ops = 1;
	return 0;
}
