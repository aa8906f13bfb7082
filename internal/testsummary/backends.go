package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// backendRuns counts, per backend, the end-to-end subtests that ran on it
// (backendtest names them Test/<backend>/...) and compares the sets: every
// subtest should run on every backend, except those that by their nature
// belong to one, which skip on the others and say why.
type backendRuns struct {
	backends []string
	ran      map[string]map[string]bool   // backend -> subtest with the backend replaced by "*" -> passed
	skipped  map[string]map[string]string // backend -> top-level test -> reason
	output   map[string][]string          // test -> output lines, until it ends
}

func newBackendRuns(backends []string) *backendRuns {
	b := &backendRuns{backends: backends, ran: map[string]map[string]bool{},
		skipped: map[string]map[string]string{}, output: map[string][]string{}}
	for _, n := range backends {
		b.ran[n], b.skipped[n] = map[string]bool{}, map[string]string{}
	}
	return b
}

// split returns a subtest's backend and its name with the backend as "*".
func (b *backendRuns) split(test string) (string, string, bool) {
	parts := strings.Split(test, "/")
	if len(parts) < 2 {
		return "", "", false
	}
	if _, ok := b.ran[parts[1]]; !ok {
		return "", "", false
	}
	be := parts[1]
	parts[1] = "*"
	return be, strings.Join(parts, "/"), true
}

func (b *backendRuns) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue
		}
		be, name, ok := b.split(e.Test)
		if !ok {
			continue
		}
		switch e.Action {
		case "output":
			b.output[e.Test] = append(b.output[e.Test], e.Output)
		case "pass", "fail":
			b.ran[be][name] = b.ran[be][name] || e.Action == "pass"
			delete(b.output, e.Test)
		case "skip":
			b.skipped[be][name] = skipReason(b.output[e.Test])
			delete(b.output, e.Test)
		}
	}
	return sc.Err()
}

// report prints one line per backend, "NAME: ran WHERE: N subtests (P
// passed)", then each subtest that ran on one backend and not on another,
// with why. It returns false if a backend ran nothing or a subtest is
// missing on a backend without a skip saying why.
func (b *backendRuns) report(out io.Writer, where map[string]string) bool {
	ok := true
	for _, n := range b.backends {
		passed := 0
		for _, p := range b.ran[n] {
			if p {
				passed++
			}
		}
		fmt.Fprintf(out, "%s: ran %s: %d subtests, %d passed\n", n, where[n], len(b.ran[n]), passed)
		if len(b.ran[n]) == 0 {
			ok = false
		}
	}
	for _, n := range b.backends {
		for _, other := range b.backends {
			if other == n {
				continue
			}
			var only []string
			for name := range b.ran[n] {
				if _, ran := b.ran[other][name]; !ran && !b.coveredBySkip(other, name) {
					only = append(only, name)
				}
			}
			sort.Strings(only)
			if len(only) > 0 {
				ok = false
				n0, more := len(only), ""
				if n0 > 20 {
					only, more = only[:20], " …"
				}
				fmt.Fprintf(out, "ran on %s but not on %s, with no reason given (%d): %s%s\n", n, other, n0, strings.Join(only, " "), more)
			}
		}
	}
	// What skipped by its nature, per backend, with the reason.
	for _, n := range b.backends {
		var names []string
		for name := range b.skipped[n] {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(out, "not on %s, by its nature: %s: %s\n", n, strings.Replace(name, "*", n, 1), b.skipped[n][name])
		}
	}
	return ok
}

// coveredBySkip reports whether subtest name (or one of its parents) was
// skipped on backend be.
func (b *backendRuns) coveredBySkip(be, name string) bool {
	for p := name; ; {
		if _, ok := b.skipped[be][p]; ok {
			return true
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}
