package sweep

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/sched"
)

// An experiment's --out directory: results.json (rewritten, whole, after
// every run), journal.jsonl (one line per finished run, appended and
// synced), the CSVs and the plots (at the end). A directory that already
// holds anything else is refused, so that no stale file of another
// experiment is ever left beside these results.

// ResultsFile and JournalFile are the summary and the journal.
const (
	ResultsFile = "results.json"
	JournalFile = "journal.jsonl"
)

// ours reports whether an --out directory's file is one an experiment
// writes.
func ours(name string) bool {
	switch name {
	case ResultsFile, JournalFile, "runs.csv", "cells.csv":
		return true
	}
	return strings.HasSuffix(name, ".svg") && !strings.ContainsAny(name, "/")
}

// PrepareOut makes dir ready for a new experiment before its first run:
// created when missing, checked writable, and empty. A directory that
// holds files is refused, unless force: then the files an experiment
// writes are removed (any other file is still refused, by name).
func PrepareOut(dir string, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errkind.IO(dir, fmt.Errorf("--out %s: %w", dir, err))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errkind.IO(dir, fmt.Errorf("--out %s: %w", dir, err))
	}
	var theirs, mine []string
	for _, e := range entries {
		if e.Type().IsRegular() && ours(e.Name()) {
			mine = append(mine, e.Name())
		} else {
			theirs = append(theirs, e.Name())
		}
	}
	switch {
	case len(theirs) > 0:
		return errkind.Usagef("--out %s holds files no experiment writes (%s): choose an empty or new directory", dir, list(theirs))
	case len(mine) > 0 && !force:
		hint := "--force replaces them"
		if res, err := ReadResults(dir); err == nil && !res.Complete {
			hint = fmt.Sprintf("it is an unfinished experiment: lhpvm experiment --resume %s finishes it; --force replaces it", dir)
		}
		return errkind.Usagef("--out %s already holds an experiment's files (%s): %s", dir, list(mine), hint)
	}
	for _, name := range mine {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return errkind.IO(dir, fmt.Errorf("--force: %w", err))
		}
	}
	return checkWritable(dir)
}

// CheckMergeOut refuses a merge's --out that is one of its inputs: the
// merged files would replace a shard's own.
func CheckMergeOut(out string, inputs []string) error {
	o, err := os.Stat(out)
	if err != nil {
		return nil // not there yet: no input
	}
	for _, in := range inputs {
		if i, err := os.Stat(in); err == nil && os.SameFile(o, i) {
			return errkind.Usagef("--out %s is one of the shards being merged (%s): choose a new directory", out, in)
		}
	}
	return nil
}

// checkWritable creates and removes a file in dir: a read-only or full
// directory is found before the first run, not after the last.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".lhpvm-probe-*")
	if err == nil {
		_, err = f.Write(make([]byte, 4096))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		os.Remove(f.Name())
	}
	if err != nil {
		return errkind.IO(dir, fmt.Errorf("--out %s is not writable: %w", dir, err))
	}
	return nil
}

func list(names []string) string {
	sort.Strings(names)
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}

// Journal appends every finished run to dir's journal and rewrites
// results.json with the results so far, both before the next run starts.
type Journal struct {
	dir string
	f   *os.File
}

// OpenJournal opens dir's journal for appending (created when missing).
func OpenJournal(dir string) (*Journal, error) {
	path := filepath.Join(dir, JournalFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, errkind.IO(dir, err)
	}
	// A line a kill cut short (its run is redone) is cut off, so that the
	// next entry starts a line of its own.
	if err := dropTornLine(f); err != nil {
		f.Close()
		return nil, errkind.IO(path, err)
	}
	return &Journal{dir: dir, f: f}, nil
}

// dropTornLine truncates f after its last newline.
func dropTornLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	// Entries are at most a few kB: the last newline is in the tail.
	const tail = 1 << 20
	off := max(0, st.Size()-tail)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	if b[len(b)-1] == '\n' {
		return nil
	}
	keep := off + int64(bytes.LastIndexByte(b, '\n')+1)
	return f.Truncate(keep)
}

// Record is a Plan.Journal.
func (j *Journal) Record(e Entry, partial func() *Results) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return errkind.IO(j.dir, fmt.Errorf("journal: %w", err))
	}
	if err := j.f.Sync(); err != nil {
		return errkind.IO(j.dir, fmt.Errorf("journal: %w", err))
	}
	if err := partial().writeTables(j.dir); err != nil {
		return errkind.IO(j.dir, err)
	}
	return nil
}

// Close closes the journal.
func (j *Journal) Close() error { return j.f.Close() }

// ReadJournal reads dir's journal: the finished runs by identity. A last
// line cut short by a crash is left out (its run is made again).
func ReadJournal(dir string) (map[string]RunResult, error) {
	path := filepath.Join(dir, JournalFile)
	b, err := host.ReadFileLimited(path, 256<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]RunResult{}, nil
	}
	if err != nil {
		return nil, errkind.IO(path, err)
	}
	done := map[string]RunResult{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			if !bytes.HasSuffix(b, []byte("\n")) && !sc.Scan() { // the last line, unfinished
				break
			}
			return nil, errkind.Usagef("%s:%d: not a journal entry: %v", path, line, err)
		}
		if _, dup := done[e.ID]; dup {
			return nil, errkind.Usagef("%s:%d: run %q is in the journal twice", path, line, e.ID)
		}
		done[e.ID] = e.Run
	}
	return done, sc.Err()
}

// Written lists the files an experiment left in dir.
func Written(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if ours(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// Resume plans the rest of the unfinished experiment in dir: the same
// matrix, seed, shard and pCPUs as recorded there, the runs of its
// journal taken as done. The caller opens the backend recorded (Backend)
// and refuses another.
func Resume(dir string) (*Plan, error) {
	res, err := ReadResults(dir)
	if err != nil {
		return nil, err
	}
	if res.Complete {
		return nil, errkind.Usagef("--resume %s: the experiment there is complete", dir)
	}
	if len(res.Shards) != 1 {
		return nil, errkind.Usagef("--resume %s: merged results, not one experiment", dir)
	}
	m := res.Matrix
	d, err := time.ParseDuration(m.Duration)
	if err != nil {
		return nil, errkind.Usagef("--resume %s: duration %q: %v", dir, m.Duration, err)
	}
	var budget time.Duration
	if m.Budget != "" {
		if budget, err = time.ParseDuration(m.Budget); err != nil {
			return nil, errkind.Usagef("--resume %s: budget %q: %v", dir, m.Budget, err)
		}
	}
	sizes := make([]string, len(m.Sizes))
	for i, n := range m.Sizes {
		sizes[i] = strconv.Itoa(n)
	}
	o := Options{Locks: strings.Join(m.Locks, ","), Policies: strings.Join(m.Policies, ","), Sizes: strings.Join(sizes, ","),
		VMVCPUs: m.VMVCPUs, Duration: d, PCPUs: sched.FormatCPUList(res.Meta.PCPUs), CSCycles: m.CSCycles, ThinkCycles: m.Think,
		Repeat: m.Repeat, Backend: res.Meta.Backend, Out: dir, Shard: res.Shards[0].String(), Ablation: m.Ablation,
		Variants: strings.Join(m.Variants, ","), BoostKicked: m.BoostKicked, Precision: m.Precision, Budget: budget,
		Seed: m.Seed, Pairs: m.Pairs}
	if m.Ablation != "" {
		o.Locks = ""
	}
	o.Changed = func(name string) bool {
		return name == "policies" || (name == "variants" && o.Variants != "") || (name == "shard" && res.Shards[0].N > 1)
	}
	if res.Shards[0].N == 1 {
		o.Shard = ""
	}
	p, err := Check(o)
	if err != nil {
		return nil, errkind.Usagef("--resume %s: its plan no longer checks: %w", dir, err)
	}
	p.Matrix.Backend = m.Backend // as first asked for (auto, ...); the backend that runs is Meta's
	if !p.Matrix.equal(m) || p.Matrix.Seed != m.Seed {
		a, _ := json.Marshal(p.Matrix)
		b, _ := json.Marshal(m)
		return nil, errkind.Usagef("--resume %s: the plan rebuilt from it differs from the one recorded:\n%s\n%s", dir, a, b)
	}
	if p.Done, err = ReadJournal(dir); err != nil {
		return nil, err
	}
	var elapsed float64
	for _, r := range p.Done {
		elapsed += r.ElapsedS
	}
	p.Resumed = &Resumed{Start: res.Meta.Start, Args: res.Meta.Args, Elapsed: time.Duration(elapsed * float64(time.Second)),
		Backend: res.Meta.Backend, Commit: res.Meta.Commit}
	return p, nil
}
