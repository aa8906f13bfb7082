// Package sched is the host scheduler: which vCPU runs on which physical CPU
// and when. At this stage it holds the pCPU set; the policies come with the
// scheduler issue.
package sched
