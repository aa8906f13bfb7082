/*
 * layout.h - guest-private constants shared by boot.S and the C code.
 *
 * boot.S cannot use the C structs of lhpvm_abi.h, so the byte offsets of the
 * vCPU-page fields the ring-0 fault handler fills are spelled out here.
 * main.c checks every one of them against the generated header with
 * _Static_assert, so they cannot drift from the ABI.
 */
#ifndef LHPVM_GUEST_LAYOUT_H
#define LHPVM_GUEST_LAYOUT_H

/* struct lhpvm_vcpu_page offsets used by the ring-0 fault handler. */
#define PG_FAULT_VECTOR 192
#define PG_FAULT_ERROR 200
#define PG_FAULT_RIP 208
#define PG_FAULT_CS 216
#define PG_FAULT_RFLAGS 224
#define PG_FAULT_RSP 232
#define PG_FAULT_CR2 240

/* The IDT: 256 16-byte gates, only the 32 exception vectors are present. */
#define IDT_ENTRIES 256
#define IDT_GATE_SIZE 16
#define IDT_BYTES (IDT_ENTRIES * IDT_GATE_SIZE)

/*
 * Exception stubs: ISR_COUNT stubs of exactly ISR_STUB_SIZE bytes each, so the
 * address of stub n is isr_stubs + n * ISR_STUB_SIZE and the IDT can be built
 * at link time (see boot.S and guest.lds).
 */
#define ISR_COUNT 32
#define ISR_STUB_SIZE 16

/* Initial ring-3 RFLAGS: reserved bit 1 and IF. */
#define USER_RFLAGS 0x202

#endif /* LHPVM_GUEST_LAYOUT_H */
