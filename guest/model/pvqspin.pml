/*
 * pvqspin.pml - a model of guest/lock_qspinlock.c's pv-qspinlock and the
 * host's WAIT/KICK, for the SPIN model checker (make model).
 *
 * N vCPUs each take the lock ITERS times. Every shared access of the C code
 * is one step here (a CAS, an XCHG, a load or a store; the C code puts a
 * full fence where a store must be seen before a later load, so the model
 * is sequentially consistent). Spin thresholds are not counted: wherever the
 * C code spins and then gives up, the model may give up at any moment, so
 * every threshold, and the predecessor check that only shortens a spin, is
 * covered. A vCPU may be delayed anywhere (preempted): SPIN explores every
 * interleaving.
 *
 * Checked: mutual exclusion (assert), the lock -> node hash never holds two
 * entries for the lock (assert), Q_SLOW is only seen with an entry
 * (assert), and - as SPIN's invalid end states - no deadlock and no lost
 * wakeup: every vCPU finishes, none is left blocked in WAIT or waiting for
 * a successor to link in.
 *
 * Knobs (cpp, as the guest's): STEAL 0 hybrid / 1 off / 2 once, PENDING
 * 1 on / 0 off, KICK 0 deferred / 1 immediate. BUG_NO_RECHECK and
 * BUG_PLAIN_UNLOCK are mutations the check must catch (check.sh).
 */
#ifndef N
#define N 3
#endif
#ifndef ITERS
#define ITERS 1
#endif
#ifndef STEAL
#define STEAL 0
#endif
#ifndef PENDING
#define PENDING 1
#endif
#ifndef KICK
#define KICK 0
#endif

#define SLOW 3
#define RUNNING 0
#define HALTED 1
#define HASHED 2

/* The lock word: locked byte (0, 1, SLOW), pending, tail (vCPU + 1). */
byte locked, tail;
bit pending;

/* Queue nodes, one per vCPU. */
bit nlocked[N];
byte nstate[N], nnext[N];

/* The lock -> node hash, for our one lock: vCPU + 1 of the hashed node. */
byte hnode;

/* The host: a KICK that finds its target not in WAIT stays pending. */
bit kickpend[N], blocked[N];

byte incs, done;

inline kick(v) {
	atomic {
		if
		:: blocked[v] -> blocked[v] = 0
		:: else -> kickpend[v] = 1
		fi
	}
}

/* WAIT(&nstate[me], HALTED): returns at once on a pending kick or another
 * value, else blocks until kicked. */
inline wait_state(me) {
	atomic {
		if
		:: kickpend[me] -> kickpend[me] = 0
		:: else ->
			if
			:: nstate[me] == HALTED -> blocked[me] = 1
			:: else -> skip
			fi
		fi
	};
	blocked[me] == 0
}

/* WAIT(&word, the word as read): woke = 1 if kicked (now or pending). */
inline wait_word(me) {
	atomic {
		if
		:: kickpend[me] -> kickpend[me] = 0; woke = 1
		:: else ->
			if
			:: locked == vl && pending == vp && tail == vt -> blocked[me] = 1; woke = 1
			:: else -> woke = 0
			fi
		fi
	};
	blocked[me] == 0
}

inline hash(v) {
	atomic { assert(hnode == 0); hnode = v + 1 }
}

proctype vcpu(byte me) {
	byte it, old, next, vl, vt, w;
	bit vp, got, woke, hashed;

	do
	:: it < ITERS ->
		/* Fast path: CAS word 0 -> locked. */
		atomic {
			if
			:: locked == 0 && pending == 0 && tail == 0 -> locked = 1; got = 1
			:: else -> got = 0
			fi
		};
		if
		:: got -> goto cs
		:: else -> skip
		fi;

		nlocked[me] = 0; nnext[me] = 0; nstate[me] = RUNNING;
		/* The trylock before queueing. */
#if STEAL == 1
		atomic {
			if
			:: locked == 0 && pending == 0 && tail == 0 -> locked = 1; got = 1
			:: else -> got = 0
			fi
		};
		if
		:: got -> goto cs
		:: else -> skip
		fi;
#else
		do
		:: atomic { vl = locked; vp = pending; vt = tail };
			if
			:: vl == 0 && vp == 0 ->
				atomic {
					if
					:: locked == 0 -> locked = 1; got = 1
					:: else -> got = 0
					fi
				};
				if
				:: got -> goto cs
				:: else -> skip
				fi
			:: else -> skip
			fi;
#if STEAL == 2
			break;
#else
			if
			:: vt == 0 || vp -> break
			:: else -> skip /* a queue and no pending: spin, steal again */
			fi
#endif
		od;
#endif
		/* xchg_tail, link behind the predecessor. */
		atomic { old = tail; tail = me + 1 };
		if
		:: old != 0 ->
			nnext[old - 1] = me + 1;
			/* pv_wait_node */
			do
			:: nlocked[me] -> break
			:: else ->
#ifdef BUG_NO_RECHECK
				/* Mutation: read locked before publishing HALTED. */
				got = nlocked[me];
				nstate[me] = HALTED;
				if
				:: !got -> wait_state(me)
				:: else -> skip
				fi;
#else
				nstate[me] = HALTED; /* XCHG: a full fence */
				if
				:: !nlocked[me] -> wait_state(me)
				:: else -> skip
				fi;
#endif
				atomic {
					if
					:: nstate[me] == HALTED -> nstate[me] = RUNNING
					:: else -> skip /* HASHED: the holder's unlock kicks us */
					fi
				}
			od
		:: else -> skip
		fi;

		/* pv_wait_head_or_lock */
		hashed = (nstate[me] == HASHED);
		do
		:: nstate[me] = RUNNING;
#if PENDING
			pending = 1;
#endif
			do
			:: atomic {
#if PENDING
				locked == 0 && pending == 1 -> locked = 1; pending = 0
#else
				locked == 0 -> locked = 1
#endif
			   }; goto gotlock
			:: skip -> break /* the head's spin threshold */
			od;
#if PENDING
			pending = 0;
#endif
			if
			:: !hashed ->
				hash(me);
				hashed = 1;
				atomic { old = locked; locked = SLOW };
				if
				:: old == 0 -> /* it was free: ours */
					locked = 1;
					atomic { assert(hnode == me + 1); hnode = 0 };
					goto gotlock
				:: else -> skip
				fi
			:: else -> skip
			fi;
			nstate[me] = HASHED;
			do
			:: atomic { vl = locked; vp = pending; vt = tail };
				if
				:: vl != SLOW -> break
				:: else ->
					wait_word(me);
					if
					:: woke -> break
					:: else -> skip
					fi
				fi
			od
		od;

gotlock:
		/* qspin_pass_head: the last node clears the tail, else the
		 * successor becomes the head (and, halted, is kicked). */
		atomic { vl = locked; vp = pending; vt = tail };
		if
		:: vt == me + 1 && vp == 0 ->
			atomic {
				if
				:: locked == vl && pending == vp && tail == vt -> locked = 1; pending = 0; tail = 0; got = 1
				:: else -> got = 0
				fi
			};
			if
			:: got -> goto cs
			:: else -> skip
			fi
		:: else -> skip
		fi;
		locked = 1;
		nnext[me] != 0; /* it swapped the tail and has not linked in yet */
		next = nnext[me] - 1;
		nlocked[next] = 1;
#if KICK == 1
		atomic {
			if
			:: nstate[next] == HALTED -> nstate[next] = RUNNING; got = 1
			:: else -> got = 0
			fi
		};
		if
		:: got -> kick(next)
		:: else -> skip
		fi;
#else
		atomic {
			if
			:: nstate[next] == HALTED -> nstate[next] = HASHED; got = 1
			:: else -> got = 0
			fi
		};
		if
		:: got -> locked = SLOW; hash(next)
		:: else -> skip
		fi;
#endif

cs:
		atomic { incs++; assert(incs == 1) };
		incs--;
		/* Unlock: CAS 1 -> 0, else unhash, release, KICK. */
#ifdef BUG_PLAIN_UNLOCK
		/* Mutation: release without looking for a hashed waiter. */
		locked = 0;
		got = 1;
#else
		atomic {
			if
			:: locked == 1 -> locked = 0; got = 1
			:: else -> got = 0
			fi
		};
#endif
		if
		:: !got ->
			atomic { assert(locked == SLOW); assert(hnode != 0); w = hnode - 1; hnode = 0 };
			locked = 0;
			kick(w)
		:: else -> skip
		fi;
		it++
	:: else -> break
	od;
	done++
}

init {
	byte i;
	atomic {
		for (i : 0 .. N - 1) {
			run vcpu(i)
		}
	}
	done == N;
	assert(locked == 0 && tail == 0 && pending == 0 && hnode == 0)
}
