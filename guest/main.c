/*
 * main.c - ring-3 entry: validate the boot info, dispatch the workload, EXIT.
 */
#include "guest.h"

/* boot.S hard-codes these page offsets; keep them equal to the ABI. */
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_vector) == PG_FAULT_VECTOR, "PG_FAULT_VECTOR");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_error) == PG_FAULT_ERROR, "PG_FAULT_ERROR");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_rip) == PG_FAULT_RIP, "PG_FAULT_RIP");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_cs) == PG_FAULT_CS, "PG_FAULT_CS");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_rflags) == PG_FAULT_RFLAGS, "PG_FAULT_RFLAGS");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_rsp) == PG_FAULT_RSP, "PG_FAULT_RSP");
_Static_assert(__builtin_offsetof(struct lhpvm_vcpu_page, fault_cr2) == PG_FAULT_CR2, "PG_FAULT_CR2");
/* this_page() and isr_common rely on the page being at the block start. */
_Static_assert(LHPVM_BLOCK_PAGE_OFF == 0, "vCPU page must start its block");
_Static_assert((LHPVM_VCPU_BLOCK_SIZE & (LHPVM_VCPU_BLOCK_SIZE - 1)) == 0, "block size must be a power of two");
_Static_assert(LHPVM_BLOCK_U_STACK_TOP <= LHPVM_VCPU_BLOCK_SIZE, "ring-3 stack must lie inside the block");

int guest_main(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page);
_Noreturn void guest_start(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page);

/* Exit code for a boot info this guest cannot run with. */
#define EXIT_BAD_BOOT 0xBAD

int guest_main(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	if (bi->magic != LHPVM_BOOT_MAGIC) {
		printf("lhpvm guest: bad boot magic 0x%x (want 0x%x)\n",
		       bi->magic, LHPVM_BOOT_MAGIC);
		return EXIT_BAD_BOOT;
	}
	if (bi->abi_version != LHPVM_VERSION) {
		printf("lhpvm guest: ABI version %u, this guest speaks %u\n",
		       bi->abi_version, LHPVM_VERSION);
		return EXIT_BAD_BOOT;
	}
	if (id >= bi->nr_vcpus) {
		printf("lhpvm guest: vCPU id %u out of range (nr_vcpus %u)\n",
		       id, bi->nr_vcpus);
		return EXIT_BAD_BOOT;
	}
	/* Every hypercall finds the page from RSP (this_page()): check that the
	 * VMM put the page, the block and the stack where the ABI says. */
	if ((uintptr_t)page != bi->vcpu_blocks_gpa + (uint64_t)id * LHPVM_VCPU_BLOCK_SIZE ||
	    page != this_page()) {
		printf("lhpvm guest: vCPU %u page at %p, want 0x%lx (blocks 0x%lx), stack in %p\n",
		       id, (void *)page,
		       bi->vcpu_blocks_gpa + (uint64_t)id * LHPVM_VCPU_BLOCK_SIZE,
		       bi->vcpu_blocks_gpa, (void *)this_page());
		return EXIT_BAD_BOOT;
	}

	switch (bi->workload) {
	case LHPVM_WORKLOAD_HELLO:
		return workload_hello(bi, id, page);
	case LHPVM_WORKLOAD_COUNTER:
		return workload_counter(bi, id, page);
	case LHPVM_WORKLOAD_NULL:
		return workload_null(bi, id, page);
	case LHPVM_WORKLOAD_HOG:
		return workload_hog(bi, id, page);
	case LHPVM_WORKLOAD_LOCK:
		return workload_lock(bi, id, page);
	case LHPVM_WORKLOAD_SPIN:
		return workload_spin(bi, id, page);
	case LHPVM_WORKLOAD_FAULT_GP:
		return workload_fault_gp(bi, id, page);
	case LHPVM_WORKLOAD_FAULT_PF:
		return workload_fault_pf(bi, id, page);
	case LHPVM_WORKLOAD_FAULT_TRIPLE:
		return workload_fault_triple(bi, id, page);
	case LHPVM_WORKLOAD_HOSTILE:
		return workload_hostile(bi, id, page);
	case LHPVM_WORKLOAD_WAIT_FOREVER:
		return workload_wait_forever(bi, id, page);
	case LHPVM_WORKLOAD_SYSCALL_WRITE:
		return workload_syscall_write(bi, id, page);
	case LHPVM_WORKLOAD_SYSCALL_OPEN:
		return workload_syscall_open(bi, id, page);
	case LHPVM_WORKLOAD_SYSCALL_EXECVE:
		return workload_syscall_execve(bi, id, page);
	case LHPVM_WORKLOAD_SYSCALL_INT80:
		return workload_syscall_int80(bi, id, page);
	case LHPVM_WORKLOAD_CODE:
		return workload_code(bi, id, page);
	default:
		printf("lhpvm guest: unknown workload %u\n", bi->workload);
		return 2;
	}
}

/*
 * Called from boot.S (user_entry) in ring 3 with the registers the VMM set:
 * RDI = boot info, RSI = vCPU id, RDX = vCPU page.
 */
_Noreturn void guest_start(struct lhpvm_boot_info *bi, uint32_t id, struct lhpvm_vcpu_page *page)
{
	hc_exit((uint32_t)guest_main(bi, id, page));
}
