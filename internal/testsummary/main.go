// Command testsummary reads `go test -json` on stdin and prints what `go
// test` prints for a list of packages (ok / FAIL lines, and the output of
// every failed test), then what was skipped and why: one line per reason,
// naming the tests. make test pipes the test runs through it, so a skipped
// backend is visible in every run. Its exit status is 1 if anything failed.
//
// With -backends it reads the JSON of whole runs from files and compares
// the end-to-end subtests per backend instead (backends.go).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type summary struct {
	out     io.Writer
	verbose bool                // print every test's output as it comes (go test -v)
	output  map[string][]string // package/test -> output lines
	skips   map[string][]string // reason -> tests
	failed  bool
	nFailed int
}

func key(e event) string { return e.Package + " " + e.Test }

func (s *summary) add(e event) {
	switch e.Action {
	case "output", "build-output":
		if s.verbose {
			fmt.Fprint(s.out, e.Output)
		}
		s.output[key(e)] = append(s.output[key(e)], e.Output)
		if e.Test == "" && strings.HasPrefix(e.Output, "panic:") {
			s.failed = true
		}
	case "skip":
		if e.Test == "" {
			return // a package without tests
		}
		reason := skipReason(s.output[key(e)])
		s.skips[reason] = append(s.skips[reason], e.Test)
		delete(s.output, key(e))
	case "pass":
		if e.Test == "" {
			fmt.Fprintf(s.out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
		}
		delete(s.output, key(e))
	case "fail", "build-fail":
		s.failed = true
		if e.Test != "" {
			s.nFailed++
			fmt.Fprint(s.out, strings.Join(s.output[key(e)], ""))
		} else {
			// The package's own output (a build error, a panic, TestMain).
			fmt.Fprint(s.out, strings.Join(s.output[key(e)], ""))
			fmt.Fprintf(s.out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
		}
		delete(s.output, key(e))
	}
}

// skipReason is what the test said before it skipped, without go test's
// own "=== RUN" and "--- SKIP" lines.
func skipReason(lines []string) string {
	var why []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		if i := strings.Index(l, ": "); i > 0 && strings.Contains(l[:i], ".go:") {
			l = l[i+2:] // drop "file.go:85: "
		}
		why = append(why, l)
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return strings.Join(why, " ")
}

func (s *summary) finish() {
	reasons := make([]string, 0, len(s.skips))
	for r := range s.skips {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		tests := s.skips[r]
		fmt.Fprintf(s.out, "skipped %d: %s: %s\n", len(tests), r, strings.Join(tests, " "))
	}
	if s.nFailed > 0 {
		fmt.Fprintf(s.out, "%d tests failed\n", s.nFailed)
	}
}

func run(in io.Reader, out io.Writer, verbose bool) bool {
	s := &summary{out: out, verbose: verbose, output: map[string][]string{}, skips: map[string][]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(out, sc.Text()) // not an event: go's own message
			continue
		}
		s.add(e)
	}
	s.finish()
	return !s.failed
}

func main() {
	backends := flag.String("backends", "", "instead: compare the subtests that ran on each backend in the `go test -json` FILEs; "+
		"a semicolon-separated list of NAME=WHERE (ptrace=natively;kvm=in the emulated runner)")
	verbose := flag.Bool("v", false, "print every test's output as it comes, as go test -v does")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go test -json ... | testsummary\n       testsummary -backends NAME=WHERE;... FILE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *backends == "" {
		if !run(os.Stdin, os.Stdout, *verbose) {
			os.Exit(1)
		}
		return
	}
	var names []string
	where := map[string]string{}
	for _, kv := range strings.Split(*backends, ";") {
		n, w, _ := strings.Cut(kv, "=")
		names = append(names, n)
		where[n] = w
	}
	b := newBackendRuns(names)
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err == nil {
			err = b.read(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if !b.report(os.Stdout, where) {
		os.Exit(1)
	}
}
