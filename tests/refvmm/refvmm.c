/*
 * refvmm — minimal C reference VMM for the lhpvm doorbell round trip.
 *
 * It measures exactly one thing: the cost of the lhpvm hypercall transport,
 * i.e. "a ring-3 guest does one 8-byte write to a doorbell GPA outside every
 * memslot -> KVM_EXIT_MMIO -> the VMM looks at the exit -> KVM_RUN again",
 * with nothing else in the loop (no Go runtime, no scheduler, no decoding
 * beyond checking the exit). The Go VMM's benchmark runs this program in the
 * same run on the same machine and compares its own round trip against it.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o refvmm refvmm.c
 * Usage: refvmm N      (N >= 1 doorbell round trips)
 * Output (stdout, one line): ns_per_exit=<float> exits=<N>
 * Errors: "refvmm: <what failed>: <reason>" on stderr, exit status 1.
 *
 * What is measured (ns_per_exit):
 *   The guest performs N "count" doorbell writes (value 0) followed by one
 *   "done" doorbell write (value 1): N+1 MMIO exits in total. t0 is taken with
 *   clock_gettime(CLOCK_MONOTONIC) right after KVM_RUN returns with the FIRST
 *   count exit; t1 right after KVM_RUN returns with the done exit. Between t0
 *   and t1 lie exactly N complete round trips, each being: host exit check ->
 *   KVM_RUN entry -> KVM completes the MMIO store and resumes the guest ->
 *   guest runs 3 ring-3 instructions (dec, jnz, mov) -> next MMIO store exits
 *   -> KVM_RUN returns to userspace. ns_per_exit = (t1 - t0) / N.
 *   VM/vCPU setup and the first entry into the guest are excluded.
 *   Any KVM_RUN that returns EINTR/EAGAIN is retried and its time stays in the
 *   measurement (this is what a real VMM pays too); it is not expected here
 *   since no signals are used.
 *
 * Guest machine state (set up directly via KVM_SET_SREGS, no boot code):
 *   64-bit long mode, CPL 3 from the first instruction. One memslot: slot 0,
 *   GPA 0, 2 MiB. Guest physical layout:
 *     0x1000  PML4     [0]   -> PDPT
 *     0x2000  PDPT     [0]   -> PD0 (0..1 GiB), [3] -> PD3 (3..4 GiB)
 *     0x3000  PD0      [0]   -> 2 MiB page at GPA 0 (the RAM)
 *     0x4000  PD3      [128] -> 2 MiB page at GPA 0xD0000000 (the doorbell,
 *                               outside any memslot -> MMIO exit)
 *     0x5000  GDT      0x00 null, 0x08 kernel code, 0x10 kernel data,
 *                      0x18 user data, 0x20 user code, 0x28 64-bit TSS (16 B)
 *     0x6000  TSS      104 bytes, all zero (never used: the code never faults)
 *     0x10000 guest code
 *     0x1ff000 initial RSP (unused by the code)
 *   All paging entries have P|RW|U; the PD entries also PS (2 MiB pages).
 *   IDT limit 0: the guest code never faults, so no IDT is needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE      (2u << 20)       /* 2 MiB, slot 0 at GPA 0 */
#define DOORBELL_GPA  0xD0000000ull
#define PML4_GPA      0x1000u
#define PDPT_GPA      0x2000u
#define PD0_GPA       0x3000u
#define PD3_GPA       0x4000u
#define GDT_GPA       0x5000u
#define TSS_GPA       0x6000u
#define CODE_GPA      0x10000u
#define STACK_TOP     0x1ff000u

#define PTE_P   (1ull << 0)
#define PTE_RW  (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_PS  (1ull << 7)

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b /* 0x18 | RPL 3 */
#define SEL_UCODE 0x23 /* 0x20 | RPL 3 */
#define SEL_TSS   0x28

/*
 * Guest code, hand-assembled (AT&T syntax), loaded at CODE_GPA.
 * rcx = N is set with KVM_SET_REGS.
 *
 *   0x00: ba 00 00 00 d0     mov  $0xd0000000, %edx   # rdx = doorbell (zero-extended)
 *   0x05: 31 c0              xor  %eax, %eax          # rax = 0 ("count")
 *   0x07: 48 89 02     loop: mov  %rax, (%rdx)        # 8-byte doorbell write -> exit
 *   0x0a: 48 ff c9           dec  %rcx
 *   0x0d: 75 f8              jnz  loop                # 0x0f + (-8) = 0x07
 *   0x0f: b8 01 00 00 00     mov  $1, %eax            # rax = 1 ("done")
 *   0x14: 48 89 02           mov  %rax, (%rdx)        # final doorbell write -> exit
 *   0x17: eb fe              jmp  .                   # never reached
 */
static const uint8_t guest_code[] = {
	0xba, 0x00, 0x00, 0x00, 0xd0,
	0x31, 0xc0,
	0x48, 0x89, 0x02,
	0x48, 0xff, 0xc9,
	0x75, 0xf8,
	0xb8, 0x01, 0x00, 0x00, 0x00,
	0x48, 0x89, 0x02,
	0xeb, 0xfe,
};

static const char *const exit_names[] = {
	[KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN",
	[KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
	[KVM_EXIT_IO] = "KVM_EXIT_IO",
	[KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
	[KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG",
	[KVM_EXIT_HLT] = "KVM_EXIT_HLT",
	[KVM_EXIT_MMIO] = "KVM_EXIT_MMIO",
	[KVM_EXIT_IRQ_WINDOW_OPEN] = "KVM_EXIT_IRQ_WINDOW_OPEN",
	[KVM_EXIT_SHUTDOWN] = "KVM_EXIT_SHUTDOWN",
	[KVM_EXIT_FAIL_ENTRY] = "KVM_EXIT_FAIL_ENTRY",
	[KVM_EXIT_INTR] = "KVM_EXIT_INTR",
	[KVM_EXIT_SET_TPR] = "KVM_EXIT_SET_TPR",
	[KVM_EXIT_TPR_ACCESS] = "KVM_EXIT_TPR_ACCESS",
	[KVM_EXIT_NMI] = "KVM_EXIT_NMI",
	[KVM_EXIT_INTERNAL_ERROR] = "KVM_EXIT_INTERNAL_ERROR",
	[KVM_EXIT_SYSTEM_EVENT] = "KVM_EXIT_SYSTEM_EVENT",
};

static const char *exit_name(uint32_t r)
{
	if (r < sizeof(exit_names) / sizeof(exit_names[0]) && exit_names[r])
		return exit_names[r];
	return "unknown";
}

/* Print "refvmm: <what>: <strerror(errno)>" and exit 1. */
static void die_errno(const char *what)
{
	int e = errno;
	fprintf(stderr, "refvmm: %s: %s\n", what, strerror(e));
	exit(1);
}

/* Print "refvmm: <formatted message>" and exit 1 (no errno involved). */
static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("refvmm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(FILE *f)
{
	fputs("usage: refvmm N\n"
	      "  Runs N doorbell round trips (ring-3 8-byte MMIO write to GPA 0xD0000000\n"
	      "  -> KVM_EXIT_MMIO -> KVM_RUN again) in a minimal KVM guest and prints\n"
	      "  one line: ns_per_exit=<float> exits=<N>\n"
	      "  ns_per_exit = wall time from the 1st doorbell exit to the final \"done\"\n"
	      "  exit, divided by N (setup excluded). N must be >= 1.\n", f);
}

static void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
	memcpy(mem + gpa, &v, sizeof(v));
}

static void setup_memory(uint8_t *mem)
{
	/* Paging: identity map GPA 0..2 MiB and the doorbell's 2 MiB page. */
	put64(mem, PML4_GPA, PDPT_GPA | PTE_P | PTE_RW | PTE_U);
	put64(mem, PDPT_GPA + 0 * 8, PD0_GPA | PTE_P | PTE_RW | PTE_U);
	put64(mem, PDPT_GPA + 3 * 8, PD3_GPA | PTE_P | PTE_RW | PTE_U);
	put64(mem, PD0_GPA + 0 * 8, 0 | PTE_P | PTE_RW | PTE_U | PTE_PS);
	{
		uint64_t idx = (DOORBELL_GPA >> 21) & 511; /* 128 */
		put64(mem, PD3_GPA + idx * 8,
		      DOORBELL_GPA | PTE_P | PTE_RW | PTE_U | PTE_PS);
	}

	/* GDT. */
	put64(mem, GDT_GPA + 0x00, 0);
	put64(mem, GDT_GPA + 0x08, 0x00af9b000000ffffull); /* kernel code */
	put64(mem, GDT_GPA + 0x10, 0x00cf93000000ffffull); /* kernel data */
	put64(mem, GDT_GPA + 0x18, 0x00cff3000000ffffull); /* user data */
	put64(mem, GDT_GPA + 0x20, 0x00affb000000ffffull); /* user code */
	{
		/* 16-byte 64-bit TSS descriptor: limit 0x67, type 0xB (busy), P. */
		uint64_t base = TSS_GPA, limit = 0x67;
		uint64_t lo = (limit & 0xffff) | ((base & 0xffffff) << 16) |
			      (0x8bull << 40) | (((limit >> 16) & 0xf) << 48) |
			      (((base >> 24) & 0xff) << 56);
		uint64_t hi = base >> 32;
		put64(mem, GDT_GPA + 0x28, lo);
		put64(mem, GDT_GPA + 0x30, hi);
	}
	/* TSS (0x6000..0x6067) is left zero; RSP0 is never used. */

	memcpy(mem + CODE_GPA, guest_code, sizeof(guest_code));
}

static struct kvm_segment seg(uint16_t sel, uint8_t type, uint8_t dpl,
			      uint8_t db, uint8_t l)
{
	struct kvm_segment s;
	memset(&s, 0, sizeof(s));
	s.base = 0;
	s.limit = 0xffffffff;
	s.selector = sel;
	s.type = type;
	s.present = 1;
	s.dpl = dpl;
	s.db = db;
	s.s = 1;
	s.l = l;
	s.g = 1;
	return s;
}

static void setup_cpuid(int kvm, int vcpu)
{
	int nent = 64;
	struct kvm_cpuid2 *c;

	for (;;) {
		c = calloc(1, sizeof(*c) + (size_t)nent * sizeof(c->entries[0]));
		if (!c)
			die_errno("calloc cpuid");
		c->nent = (uint32_t)nent;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		if (errno != E2BIG)
			die_errno("KVM_GET_SUPPORTED_CPUID");
		free(c);
		nent *= 2;
		if (nent > 4096)
			die("KVM_GET_SUPPORTED_CPUID: too many entries");
	}
	if (ioctl(vcpu, KVM_SET_CPUID2, c) < 0)
		die_errno("KVM_SET_CPUID2");
	free(c);
}

static void setup_sregs(int vcpu)
{
	struct kvm_sregs sr;

	if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0)
		die_errno("KVM_GET_SREGS");

	sr.cs = seg(SEL_UCODE, 11, 3, 0, 1);
	sr.ss = seg(SEL_UDATA, 3, 3, 1, 0);
	sr.ds = sr.ss;
	sr.es = sr.ss;
	sr.fs = sr.ss;
	sr.gs = sr.ss;

	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.base = TSS_GPA;
	sr.tr.limit = 0x67;
	sr.tr.selector = SEL_TSS;
	sr.tr.type = 11; /* 64-bit TSS, busy */
	sr.tr.present = 1;
	/* LDT stays as KVM_GET_SREGS reported it (reset state). */

	sr.gdt.base = GDT_GPA;
	sr.gdt.limit = 0x37; /* 7 slots of 8 bytes (TSS takes two) */
	sr.idt.base = 0;
	sr.idt.limit = 0;

	sr.cr3 = PML4_GPA;
	sr.cr4 = 0x620;      /* PAE | OSFXSR | OSXMMEXCPT */
	sr.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
	sr.efer = 0x500;     /* LME | LMA */

	if (ioctl(vcpu, KVM_SET_SREGS, &sr) < 0)
		die_errno("KVM_SET_SREGS");
}

static void setup_regs(int vcpu, uint64_t n)
{
	struct kvm_regs r;

	memset(&r, 0, sizeof(r));
	r.rip = CODE_GPA;
	r.rsp = STACK_TOP;
	r.rflags = 0x202;
	r.rcx = n;
	if (ioctl(vcpu, KVM_SET_REGS, &r) < 0)
		die_errno("KVM_SET_REGS");
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		die_errno("clock_gettime");
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void dump_and_die(int vcpu, struct kvm_run *run, const char *why)
{
	struct kvm_regs r;
	unsigned long long rip = 0;

	if (ioctl(vcpu, KVM_GET_REGS, &r) == 0)
		rip = r.rip;
	if (run->exit_reason == KVM_EXIT_MMIO)
		die("%s: MMIO %s gpa=0x%llx len=%u data=0x%llx rip=0x%llx", why,
		    run->mmio.is_write ? "write" : "read",
		    (unsigned long long)run->mmio.phys_addr, run->mmio.len,
		    (unsigned long long)*(uint64_t *)run->mmio.data, rip);
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		die("%s: exit reason %u (%s) suberror %u rip=0x%llx", why,
		    run->exit_reason, exit_name(run->exit_reason),
		    run->internal.suberror, rip);
	if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		die("%s: exit reason %u (%s) hw reason 0x%llx rip=0x%llx", why,
		    run->exit_reason, exit_name(run->exit_reason),
		    (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
		    rip);
	die("%s: exit reason %u (%s) rip=0x%llx", why, run->exit_reason,
	    exit_name(run->exit_reason), rip);
}

int main(int argc, char **argv)
{
	uint64_t n, counted = 0, t0 = 0, t1 = 0;
	char *end;
	int kvm, vm, vcpu, done = 0;
	long mmap_size;
	uint8_t *mem;
	struct kvm_run *run;
	struct kvm_userspace_memory_region region;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
			  strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc != 2) {
		usage(stderr);
		return 1;
	}
	errno = 0;
	n = strtoull(argv[1], &end, 10);
	if (argv[1][0] < '0' || argv[1][0] > '9' || *end != '\0' || errno)
		die("invalid N %s: want a decimal integer >= 1", argv[1]);
	if (n < 1)
		die("invalid N %s: want a decimal integer >= 1", argv[1]);

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die_errno("open /dev/kvm");
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die("KVM_GET_API_VERSION: unexpected API version");

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die_errno("KVM_CREATE_VM");

	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die_errno("mmap guest memory");
	setup_memory(mem);

	memset(&region, 0, sizeof(region));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = MEM_SIZE;
	region.userspace_addr = (uint64_t)(uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die_errno("KVM_SET_USER_MEMORY_REGION");

	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die_errno("KVM_CREATE_VCPU");
	mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < 0)
		die_errno("KVM_GET_VCPU_MMAP_SIZE");
	if ((size_t)mmap_size < sizeof(*run))
		die("KVM_GET_VCPU_MMAP_SIZE: size %ld too small", mmap_size);
	run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   vcpu, 0);
	if (run == MAP_FAILED)
		die_errno("mmap kvm_run");

	setup_cpuid(kvm, vcpu);
	setup_sregs(vcpu);
	setup_regs(vcpu, n);

	while (!done) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die_errno("KVM_RUN");
		}
		if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write ||
		    run->mmio.phys_addr != DOORBELL_GPA || run->mmio.len != 8)
			dump_and_die(vcpu, run, "unexpected exit");

		uint64_t data;
		memcpy(&data, run->mmio.data, sizeof(data));
		if (data == 0) {
			if (counted == 0)
				t0 = now_ns();
			counted++;
			if (counted > n)
				die("guest rang the doorbell more than N=%" PRIu64
				    " times", n);
		} else if (data == 1) {
			t1 = now_ns();
			done = 1;
		} else {
			dump_and_die(vcpu, run, "unexpected doorbell value");
		}
	}
	if (counted != n)
		die("guest rang the doorbell %" PRIu64 " times, want %" PRIu64,
		    counted, n);

	if (munmap(run, (size_t)mmap_size) < 0)
		die_errno("munmap kvm_run");
	if (close(vcpu) < 0)
		die_errno("close vcpu");
	if (close(vm) < 0)
		die_errno("close vm");
	if (munmap(mem, MEM_SIZE) < 0)
		die_errno("munmap guest memory");
	if (close(kvm) < 0)
		die_errno("close /dev/kvm");

	printf("ns_per_exit=%.1f exits=%" PRIu64 "\n",
	       (double)(t1 - t0) / (double)n, n);
	if (fflush(stdout) != 0)
		die_errno("write stdout");
	return 0;
}
