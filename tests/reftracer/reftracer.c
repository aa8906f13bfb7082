/*
 * reftracer - minimal C reference tracer for the lhpvm ptrace backend's
 * doorbell round trip, as tests/refvmm is for KVM.
 *
 * It measures exactly the transport: "a traced process in a seccomp sandbox
 * does one 8-byte store to the unmapped doorbell 0xD0000000 -> SIGSEGV stop
 * -> the tracer reads the siginfo and the registers, checks the instruction,
 * moves RIP past it -> PTRACE_CONT", with the same ptrace requests the Go
 * backend makes per hypercall (wait4, PTRACE_GETSIGINFO, PTRACE_GETREGS,
 * PTRACE_SETREGS, PTRACE_CONT) and nothing else: no Go runtime, no VMM, no
 * instruction decoder beyond comparing three known bytes. The benchmark runs
 * it in the same run, pinned like the Go tracer (tracer and tracee on one
 * CPU: `taskset -c N reftracer ...`), and compares.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o reftracer reftracer.c
 * Usage: reftracer N    (N >= 1 doorbell round trips)
 * Output (stdout, one line): ns_per_exit=<float> exits=<N>
 * Errors: "reftracer: <what failed>: <reason>" on stderr, exit status 1.
 *
 * ns_per_exit is (t1 - t0) / N, t0 taken when the first doorbell stop is
 * seen, t1 when the final one is: exactly N complete round trips between.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DOORBELL 0xD0000000UL

static void die(const char *what)
{
	fprintf(stderr, "reftracer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void fail(const char *what)
{
	fprintf(stderr, "reftracer: %s\n", what);
	exit(1);
}

/* The "guest": N doorbell stores of 0, then one of 1 (the code the Go
 * backend's stub runs is the guest's own; this one is ours, but the store is
 * the same 3-byte `mov %rax,(%rdx)` the real guest's register form uses). */
static void __attribute__((noreturn, noinline)) guest(long n)
{
	__asm__ __volatile__(
		"	movl $0xd0000000, %%edx\n"
		"	xorl %%eax, %%eax\n"
		"1:\n"
		"	movq %%rax, (%%rdx)\n"
		"	decq %%rcx\n"
		"	jnz 1b\n"
		"	movl $1, %%eax\n"
		"	movq %%rax, (%%rdx)\n"
		"	ud2\n"
		:
		: "c"(n)
		: "rax", "rdx", "memory");
	__builtin_unreachable();
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n;
	pid_t pid;
	int status;
	long exits = 0;
	double t0 = 0, t1;

	if (argc != 2 || (n = strtol(argv[1], NULL, 10)) < 1) {
		fprintf(stderr, "usage: reftracer N   (N >= 1 doorbell round trips)\n");
		return 1;
	}
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		struct sock_filter trap_all[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP) };
		struct sock_fprog prog = { .len = 1, .filter = trap_all };

		if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
			die("PTRACE_TRACEME");
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			die("PR_SET_NO_NEW_PRIVS");
		raise(SIGSTOP);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
			die("seccomp");
		guest(n);
	}
	if (waitpid(pid, &status, __WALL) < 0 || !WIFSTOPPED(status))
		fail("the child did not stop");
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL) < 0)
		die("PTRACE_SETOPTIONS");
	for (;;) {
		siginfo_t si;
		struct user_regs_struct r;

		if (ptrace(PTRACE_CONT, pid, 0, 0) < 0)
			die("PTRACE_CONT");
		if (waitpid(pid, &status, __WALL) < 0)
			die("wait4");
		if (!WIFSTOPPED(status))
			fail("the child ended");
		if (WSTOPSIG(status) != SIGSEGV)
			continue; /* a stray signal: swallowed, as the Go tracer does */
		if (ptrace(PTRACE_GETSIGINFO, pid, 0, &si) < 0)
			die("PTRACE_GETSIGINFO");
		if ((unsigned long)si.si_addr != DOORBELL)
			fail("a SIGSEGV away from the doorbell");
		if (ptrace(PTRACE_GETREGS, pid, 0, &r) < 0)
			die("PTRACE_GETREGS");
		/* The child is our fork: its code is at the same address here. */
		if (memcmp((const void *)r.rip, "\x48\x89\x02", 3) != 0)
			fail("an unexpected instruction at the doorbell");
		if (exits == 0)
			t0 = now();
		if (r.rax == 1)
			break;
		exits++;
		r.rip += 3;
		if (ptrace(PTRACE_SETREGS, pid, 0, &r) < 0)
			die("PTRACE_SETREGS");
	}
	t1 = now();
	kill(pid, SIGKILL);
	waitpid(pid, &status, __WALL);
	if (exits != n)
		fail("the doorbell count is wrong");
	printf("ns_per_exit=%.1f exits=%ld\n", (t1 - t0) / n, exits);
	return 0;
}
