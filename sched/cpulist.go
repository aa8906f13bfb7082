package sched

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ParseCPUList parses a Linux-style CPU list ("0,1", "0-3", "0-1,4") into a
// sorted list of distinct CPU ids.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty CPU list")
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, "-") {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number (CPUs are numbered from 0)", s, part)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := cpuNumber(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = cpuNumber(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q (want LOW-HIGH)", s, part)
			}
		}
		if b-a > 4096 {
			return nil, fmt.Errorf("CPU list %q: range %q is too large", s, part)
		}
		for c := a; c <= b; c++ {
			seen[c] = true
		}
	}
	cpus := make([]int, 0, len(seen))
	for c := range seen {
		cpus = append(cpus, c)
	}
	sort.Ints(cpus)
	return cpus, nil
}

// maxCPU bounds a CPU number (Linux's NR_CPUS is at most 8192).
const maxCPU = 8191

// cpuNumber reads a CPU number: decimal digits only (no sign, no space).
func cpuNumber(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a CPU number")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxCPU {
		return 0, fmt.Errorf("not a CPU number")
	}
	return n, nil
}

// FormatCPUList is the inverse of ParseCPUList, with ranges folded.
func FormatCPUList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
