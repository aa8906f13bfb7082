/*
 * host.h - the host harness's side of host.c: the simulated vCPUs' WAIT/KICK
 * state, for locktest.c.
 */
#ifndef LHPVM_HOSTTEST_HOST_H
#define LHPVM_HOSTTEST_HOST_H

#include <stdint.h>

struct host_vcpu {
	uint32_t kick_pending; /* a KICK not yet consumed by a WAIT */
	uint32_t seq;          /* futex word: bumped by every KICK */
	uint64_t wait_addr;    /* the WAIT in progress (0: none), for diagnostics */
	uint32_t wait_val;
	uint64_t kicks_received;
	uint64_t wait_calls;
} __attribute__((aligned(64)));

extern struct host_vcpu *host_vcpus;
extern uint32_t host_nr_vcpus;
extern uint32_t host_in_wait;   /* threads blocked in WAIT right now */
extern uint64_t host_wakes;     /* WAITs that returned after blocking */

/* Set up n vCPUs (once per process) and bind the calling thread to one. */
void host_init(uint32_t n);
void host_bind_self(uint32_t id);

#endif
