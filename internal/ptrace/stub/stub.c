/*
 * stub.c - the process a ptrace-backend vCPU runs its guest in.
 *
 * lhpvm starts one stub per vCPU (from memory: the Go binary embeds this
 * program), traced from birth by the vCPU's tracer thread. The stub prepares
 * its own address space and then gives itself up:
 *
 *   1. maps guest RAM - fd 0, a memfd - at GPA == VA from 0x1000 up (page 0
 *      stays unmapped, so a null pointer faults); nothing of the stub lies
 *      below 4 GiB (it is linked at 1 TiB), and the doorbell page is never
 *      mapped, so every doorbell access faults into the tracer;
 *   2. unblocks every signal (the tracer's kick is a signal), sets
 *      PR_SET_PDEATHSIG (SIGKILL) and PR_SET_NO_NEW_PRIVS, and names
 *      itself lhpvm-stub;
 *   3. closes every file descriptor, the memfd and the error pipe included:
 *      the mapping keeps guest RAM alive;
 *   4. installs a seccomp filter that traps every system call, of every
 *      convention (syscall, int $0x80, sysenter), with SIGSYS;
 *   5. executes int3: the tracer sees the SIGTRAP, loads the guest's entry
 *      registers and resumes it. From then on no guest instruction can reach
 *      the host kernel: a system call becomes a SIGSYS the tracer reports.
 *
 * Usage (by lhpvm only): lhpvm-stub RAMSIZE, RAMSIZE in hex bytes.
 * Until step 3 a failure is one line on fd 1 (a pipe to the tracer) and
 * exit status 1; a seccomp failure after it exits with 100 + errno.
 *
 * Freestanding: no libc, no stack protector, no TLS. The syscalls are
 * inline asm.
 */
#include <stddef.h>
#include <stdint.h>

#include <asm/unistd.h>
#include <linux/filter.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <linux/signal.h>

#define GUEST_RAM_START 0x1000UL
#define GUEST_RAM_MAX (2UL << 30) /* LHPVM MaxMemBytes; below the doorbell */
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ __volatile__("syscall"
			     : "=a"(ret)
			     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			     : "rcx", "r11", "memory");
	return ret;
}

#define sys3(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static __attribute__((noreturn)) void die(const char *what, long err)
{
	char buf[160];
	size_t n = 0;
	const char *p;
	char num[24];
	int k = 0;
	unsigned long e = (unsigned long)-err;

	for (p = "lhpvm-stub: "; *p && n < sizeof(buf) - 32; p++)
		buf[n++] = *p;
	for (p = what; *p && n < sizeof(buf) - 32; p++)
		buf[n++] = *p;
	for (p = ": errno "; *p; p++)
		buf[n++] = *p;
	do {
		num[k++] = (char)('0' + e % 10);
		e /= 10;
	} while (e && k < (int)sizeof(num));
	while (k)
		buf[n++] = num[--k];
	buf[n++] = '\n';
	sys3(__NR_write, 1, buf, n);
	sys3(__NR_exit_group, 1, 0, 0);
	__builtin_unreachable();
}

static unsigned long parse_hex(const char *s, int *ok)
{
	unsigned long v = 0;
	int digits = 0;

	*ok = 0;
	for (; *s; s++, digits++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			return 0;
		if (digits >= 16)
			return 0;
		v = v << 4 | (unsigned long)d;
	}
	*ok = digits > 0;
	return v;
}

/* Called from _start with the kernel's initial stack: argc, argv[], NULL, envp. */
__attribute__((noreturn, used)) void stub_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	unsigned long ram;
	long r;
	int ok;
	uint64_t none = 0;
	struct sock_filter trap_all[] = {
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
	};
	struct sock_fprog prog = { .len = 1, .filter = trap_all };

	if (argc != 2)
		die("usage: lhpvm-stub RAMSIZE (started by lhpvm only)", -22);
	ram = parse_hex(argv[1], &ok);
	if (!ok || ram <= GUEST_RAM_START || ram > GUEST_RAM_MAX || ram % 4096)
		die("bad RAMSIZE", -22);

	r = sys6(__NR_mmap, GUEST_RAM_START, ram - GUEST_RAM_START,
		 PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED | MAP_FIXED_NOREPLACE,
		 0, GUEST_RAM_START);
	if (r < 0 && r > -4096)
		die("mmap guest RAM at 0x1000", r);
	if ((unsigned long)r != GUEST_RAM_START) /* a kernel without MAP_FIXED_NOREPLACE */
		die("mmap guest RAM: not placed at 0x1000", -17);

	r = sys6(__NR_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof(none), 0, 0);
	if (r < 0)
		die("rt_sigprocmask", r);
	r = sys3(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
	if (r < 0)
		die("prctl(PR_SET_PDEATHSIG)", r);
	if (sys3(__NR_getppid, 0, 0, 0) == 1)
		die("the tracer is gone", -3); /* it died before PDEATHSIG was armed */
	r = sys3(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0);
	if (r < 0)
		die("prctl(PR_SET_NO_NEW_PRIVS)", r);
	/* Exec'd from /proc/self/fd/N, the stub would be called "N" in ps. */
	sys3(__NR_prctl, PR_SET_NAME, "lhpvm-stub", 0);

	r = sys3(__NR_close_range, 0, ~0U, 0);
	if (r < 0) {
		/* Before Linux 5.9: close what the limit allows. */
		unsigned long lim[2] = { 1024, 1024 };

		sys3(__NR_getrlimit, 7 /* RLIMIT_NOFILE */, lim, 0);
		for (unsigned long fd = 0; fd < lim[0] && fd < (1UL << 20); fd++)
			sys3(__NR_close, fd, 0, 0);
	}

	r = sys3(__NR_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
	if (r < 0)
		sys3(__NR_exit_group, 100 + (-r & 0x7f), 0, 0);

	/* Ready: from here on only the tracer moves us. */
	__asm__ __volatile__("int3\n\tud2" ::: "memory");
	__builtin_unreachable();
}

__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	movq %rsp, %rdi\n"
	"	andq $-16, %rsp\n"
	"	call stub_main\n"
	"	ud2\n"
	".size _start, . - _start\n");
