package sched

import "time"

// monitor: round-robin as rr (same per-pCPU FIFO queues, placement, idle
// stealing and Queuer operations), plus hypervisor-side monitoring of the
// running vCPUs that needs no help from the guest: no Hints, no shared page,
// only RIPs read by probes (Plan.Probe) and the VM's CodeMap (State.Code).
//
// Safe preemption points. When a running vCPU's slice ends (the slice, or a
// Boost) and rr would preempt it (someone waits for the pCPU), it keeps
// running while a probe reads its RIP, at most monitorProbeTimeout:
//
//   - RIP outside the VM's critical sections (CodeMap.CS): safe, preempt now.
//   - RIP inside: it may hold a lock; the preemption is deferred by
//     monitorDeferStep and the vCPU probed again, at most monitorMaxDeferrals
//     times (State.Acct.Deferrals counts them). At the end of the last
//     deferral it is preempted without another probe (the answer could not
//     change that).
//   - No answer within monitorProbeTimeout: preempted anyway.
//
// So a slice end is held at most monitorMaxDeferrals*(monitorProbeTimeout+
// monitorDeferStep) (900 us by default; ~50 us for a safe vCPU on nested KVM,
// about one probe). This holds for a slice cut short by a Boost too (pv's
// KICK): the woken vCPU may wait that much longer. A YIELD is a preemption
// point the guest chose: no probe.
//
// Software pause-loop exit. While someone waits for its pCPU, a running
// vCPU is probed every monitorSamplePeriod. A vCPU whose RIP lies in the
// VM's lock wait loops (CodeMap.Spin) at monitorSpinSamples consecutive
// samples (it has spun K-1 to K periods, 2-3 ms by default) is preempted and
// goes to the tail of its queue (State.Acct.SpinPreempts). Its pCPU goes
// to, in this order: a runnable sibling (same VM) last seen in a critical
// section (likely the preempted holder), any runnable sibling, any other
// runnable vCPU of its own queue, then of another queue, and only then to
// one whose last probe saw it spinning: that view is stale (the lock may
// have moved on while it waited), and under a FIFO lock rotating through the
// spinners is how the waiter whose turn has come gets to run within a few
// sample periods instead of a whole slice.
//
// Probe traffic. A probe costs the vCPU one exit, 30-50 us here. Each
// running vCPU has at most one probe in flight, and probes are sent only
// while someone waits for its pCPU and the image has the matching range:
// at most one per monitorSamplePeriod (Spin range; ~3-5% of the vCPU's time
// at 1 ms) plus at most monitorMaxDeferrals per slice end (CS range; the
// first one may be a sample already in flight). Idle contention, an image
// without the symbols, or a machine that is not overcommitted: no probes.
// With both ranges empty, monitor is exactly rr.
//
// A probe answer that arrives after its timeout, or for a run of the vCPU
// that has ended (it was preempted and dispatched again before the answer
// came), is ignored. A RIP is a snapshot: the vCPU goes on running after the
// probe, so "safe" means safe a few microseconds before the preemption.
type monitorPolicy struct {
	slice sliceClock
	runQueues
	m []monVCPU // per vCPU index

	probeTimeout time.Duration
	deferStep    time.Duration
	maxDeferrals int
	samplePeriod time.Duration
	spinSamples  int

	// Private counters (tests, debugging).
	timeouts uint64 // probes that got no answer in time
	stale    uint64 // answers ignored (late, or for an earlier run)
}

// Defaults of the monitor policy's parameters.
const (
	monitorProbeTimeout = 200 * time.Microsecond // longest wait for a probe answer
	monitorDeferStep    = 100 * time.Microsecond // one deferral for a RIP in a critical section
	monitorMaxDeferrals = 3                      // deferrals per slice end
	monitorSamplePeriod = time.Millisecond       // spin sampling of a contended running vCPU
	monitorSpinSamples  = 3                      // consecutive spin-range samples that make a spinner
)

// monGate is where a slice end stands.
type monGate uint8

const (
	gateNone     monGate = iota // no slice end pending
	gateProbing                 // waiting for the probe answer (until sentAt+probeTimeout)
	gateDeferred                // RIP was in a critical section: wait until `until`
	gateGo                      // safe, or out of patience: preempt at the next Decide
)

// monVCPU is the monitor's view of one vCPU.
type monVCPU struct {
	probing    bool          // a probe is in flight
	sentAt     time.Duration // when it was asked for
	nextSample time.Duration // next spin sample
	spins      int           // consecutive spin-range samples
	gate       monGate
	until      time.Duration // end of the current deferral
	deferrals  int           // deferrals at this slice end
	// What the last answered probe saw; kept while the vCPU waits, to choose
	// whom a spinner's pCPU goes to.
	lastSpin, lastCS bool
}

func init() {
	register("monitor",
		"rr plus RIP monitoring without guest hints: a slice end waits for a probe and is deferred while the RIP is in a critical section; a vCPU seen in the lock wait loop at 3 samples in a row (1 ms apart) is preempted for a sibling",
		func(o Options) Policy { return newMonitor(o) })
}

func newMonitor(o Options) *monitorPolicy {
	return &monitorPolicy{slice: sliceClock{slice: o.Slice},
		probeTimeout: monitorProbeTimeout, deferStep: monitorDeferStep, maxDeferrals: monitorMaxDeferrals,
		samplePeriod: monitorSamplePeriod, spinSamples: monitorSpinSamples}
}

func (p *monitorPolicy) Name() string    { return "monitor" }
func (p *monitorPolicy) Exclusive() bool { return true }

func (p *monitorPolicy) Admit(s *State) error {
	n := len(s.PCPUs)
	p.init(n)
	p.m = make([]monVCPU, len(s.VCPUs))
	return nil
}

// code is v's VM's code map (empty if the state has none).
func (p *monitorPolicy) code(s *State, v *VCPU) CodeMap {
	if v.VM < len(s.Code) {
		return s.Code[v.VM]
	}
	return CodeMap{}
}

func nonEmpty(r AddrRange) bool { return r.End > r.Start }

func (p *monitorPolicy) Event(s *State, ev Event) {
	v := ev.V
	m := &p.m[v.Index]
	switch ev.Kind {
	case EvRunnable:
		m.lastSpin, m.lastCS = false, false // started, or woken from WAIT: not spinning
		if p.queueOf(v) < 0 {
			p.q[v.Home] = append(p.q[v.Home], v)
		}
	case EvBlocked, EvExit:
		*m = monVCPU{}
		p.remove(v)
	case EvYield:
		p.yield(v)
	case EvDispatched:
		*m = monVCPU{nextSample: s.Now + p.samplePeriod, lastSpin: m.lastSpin, lastCS: m.lastCS}
	case EvPreempted:
		*m = monVCPU{lastSpin: m.lastSpin, lastCS: m.lastCS}
	case EvProbed:
		p.probed(s, v, ev.RIP)
	}
}

// probed takes a probe answer.
func (p *monitorPolicy) probed(s *State, v *VCPU, rip uint64) {
	m := &p.m[v.Index]
	if !m.probing || v.Status != Running {
		p.stale++
		return
	}
	m.probing = false
	c := p.code(s, v)
	inSpin, inCS := c.Spin.Contains(rip), c.CS.Contains(rip)
	m.lastSpin, m.lastCS = inSpin, inCS
	if inSpin {
		m.spins++
	} else {
		m.spins = 0
	}
	if m.gate == gateProbing {
		if inCS && m.deferrals < p.maxDeferrals {
			m.deferrals++
			s.Acct.Deferrals++
			m.gate, m.until = gateDeferred, s.Now+p.deferStep
		} else {
			m.gate = gateGo
		}
	}
}

func (p *monitorPolicy) Decide(s *State) Plan {
	var plan Plan
	for i := range p.cur {
		// The monitor first: it may hold cur past its slice end, end its
		// slice now, or put a spinner's successor at the front of q[i].
		watched := p.cur[i]
		var probe bool
		var due time.Duration
		if watched != nil && watched.Status == Running {
			probe, due = p.watch(s, i, watched)
		}

		// rr.
		cur := p.rotate(s, i, &p.slice)
		if cur != nil {
			plan.Run = append(plan.Run, Assignment{V: cur, PCPU: i, SliceEnd: cur.SliceEnd})
			if len(p.q[i]) > 0 || p.longestOther(i) > 0 {
				plan.Next = earliest(plan.Next, cur.SliceEnd)
				if cur.Status != Running && nonEmpty(p.code(s, cur).Spin) {
					// Dispatched by this plan: its first sample (EvDispatched
					// sets nextSample to the same time).
					plan.Next = earliest(plan.Next, s.Now+p.samplePeriod)
				}
			}
		}

		// The monitor's probe and deadline, if watched still runs here.
		if watched == nil {
			continue
		}
		if p.cur[i] != watched {
			if probe {
				p.m[watched.Index].probing = false
			}
			continue
		}
		if probe {
			plan.Probe = append(plan.Probe, watched)
		}
		plan.Next = earliest(plan.Next, due)
	}
	return plan
}

// watch is the monitor's look at v, running on pCPU i, before rr decides.
// It may set v.SliceEnd (hold it past its slice end, or end it now) and
// reorder the queues. It returns whether to probe v now and when to look at
// v again (0: no monitor deadline).
func (p *monitorPolicy) watch(s *State, i int, v *VCPU) (probe bool, due time.Duration) {
	c := p.code(s, v)
	gateOn := nonEmpty(c.CS) && p.maxDeferrals > 0
	spinOn := nonEmpty(c.Spin)
	if !gateOn && !spinOn {
		return false, 0 // nothing to look for: rr
	}
	m := &p.m[v.Index]
	if m.probing && s.Now >= m.sentAt+p.probeTimeout {
		m.probing = false // lost (e.g. the vCPU never left the guest in time)
		m.spins = 0       // the run of consecutive samples is broken
		p.timeouts++
	}
	send := func() {
		m.probing, m.sentAt, m.nextSample = true, s.Now, s.Now+p.samplePeriod
		probe = true
	}
	contended := len(p.q[i]) > 0 || p.longestOther(i) > 0
	if p.yielded[i] || !contended {
		// A YIELD is the guest's own preemption point; with nobody waiting
		// rr would not preempt. Either way: no gate, no sampling.
		if m.gate != gateNone && !p.yielded[i] {
			v.SliceEnd = s.Now // drop the hold: rr gives it a new slice
		}
		m.gate, m.deferrals, m.spins = gateNone, 0, 0
		m.probing = false // forget a probe in flight: its answer is stale
		m.nextSample = max(m.nextSample, s.Now+p.samplePeriod)
		return false, 0
	}

	switch m.gate {
	case gateNone:
		if gateOn && s.Now >= v.SliceEnd {
			// A slice end: find out whether it is a safe point. A sample
			// already in flight answers it.
			m.gate, m.deferrals = gateProbing, 0
			if !m.probing {
				send()
			}
			v.SliceEnd = m.sentAt + p.probeTimeout
			return probe, v.SliceEnd
		}
	case gateProbing:
		if m.probing {
			v.SliceEnd = m.sentAt + p.probeTimeout // hold it (against a Boost)
			return false, v.SliceEnd
		}
		m.gate = gateGo // no answer in time
	case gateDeferred:
		if s.Now < m.until {
			v.SliceEnd = m.until
			return false, m.until
		}
		if m.deferrals >= p.maxDeferrals {
			m.gate = gateGo // out of deferrals: the answer would not matter
			break
		}
		m.gate = gateProbing
		if !m.probing {
			send()
		}
		v.SliceEnd = m.sentAt + p.probeTimeout
		return probe, v.SliceEnd
	}
	if m.gate == gateGo {
		v.SliceEnd = s.Now // rr rotates it now
		return false, 0
	}

	// No slice end pending: spin detection and sampling (at a slice end rr
	// rotates anyway: nothing to sample, nobody to preempt early).
	if !spinOn || s.Now >= v.SliceEnd {
		return false, 0
	}
	if m.spins >= p.spinSamples && p.spinSuccessor(i, v) {
		s.Acct.SpinPreempts++
		s.Mark(MarkSpinPreempt, v)
		s.EndReason(v, EndSpin)
		m.spins = 0
		v.SliceEnd = s.Now
		return false, 0
	}
	if !m.probing && s.Now >= m.nextSample {
		send()
	}
	if m.probing {
		return probe, m.sentAt + p.probeTimeout
	}
	return false, m.nextSample
}

// spinSuccessor puts at the front of q[i] the vCPU that should get spinner
// v's pCPU, taking it from another queue if need be. False if there is none.
func (p *monitorPolicy) spinSuccessor(i int, v *VCPU) bool {
	rank := func(j int, w *VCPU) int {
		switch mw := p.m[w.Index]; {
		case mw.lastSpin:
			return 4 // was spinning when last seen: a last resort
		case w.VM == v.VM && mw.lastCS:
			return 0 // a sibling last seen in a critical section: likely the holder
		case w.VM == v.VM:
			return 1
		case j == i:
			return 2
		default:
			return 3
		}
	}
	bestJ, bestK, bestR := -1, -1, 5
	for n := range p.q {
		j := (i + n) % len(p.q) // own queue first
		for k, w := range p.q[j] {
			if r := rank(j, w); r >= 0 && r < bestR {
				bestJ, bestK, bestR = j, k, r
			}
		}
	}
	if bestJ < 0 {
		return false
	}
	w := p.q[bestJ][bestK]
	p.q[bestJ] = append(p.q[bestJ][:bestK], p.q[bestJ][bestK+1:]...)
	p.q[i] = append([]*VCPU{w}, p.q[i]...)
	return true
}
