package sched

// host: no gating. Every runnable vCPU's thread is allowed into KVM_RUN on
// its home pCPU (pinned round-robin) and Linux time-slices the threads, as
// with plain KVM. WAIT still parks a thread until its KICK.
type hostPolicy struct{}

func init() {
	register("host", "no gating: threads pinned round-robin, Linux time-slices them (plain KVM)",
		func(Options) Policy { return hostPolicy{} })
}

func (hostPolicy) Name() string        { return "host" }
func (hostPolicy) Admit(*State) error  { return nil }
func (hostPolicy) Event(*State, Event) {}
func (hostPolicy) Exclusive() bool     { return false }
func (hostPolicy) Decide(s *State) Plan {
	var p Plan
	for _, v := range s.VCPUs {
		if v.Status == Runnable || v.Status == Running {
			p.Run = append(p.Run, Assignment{V: v, PCPU: v.Home})
		}
	}
	return p
}
