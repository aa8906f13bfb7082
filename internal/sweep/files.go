package sweep

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lhpvm/lhpvm/internal/atomicfile"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
)

// The files of an experiment's --out directory: results.json, which merge
// reads back, the two CSVs and the plots.

// Write puts results.json, runs.csv, cells.csv and the plots into dir. Its
// errors are I/O errors.
func (res *Results) Write(dir string) error {
	return errkind.IO(dir, res.write(dir))
}

func (res *Results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := res.writeTables(dir); err != nil {
		return err
	}
	return plotResults(res, dir)
}

// writeTables writes results.json and the CSVs, each atomically: what a
// reader (or a crash) finds there is always a whole file, old or new.
func (res *Results) writeTables(dir string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, ResultsFile), append(b, '\n')); err != nil {
		return err
	}
	for name, write := range map[string]func(io.Writer) error{"runs.csv": res.writeRunsCSV, "cells.csv": res.writeCellsCSV} {
		if err := atomicfile.Write(filepath.Join(dir, name), write); err != nil {
			return err
		}
	}
	return nil
}

// The CSV files: runs.csv has a row per run (every cell's and every
// reference's), cells.csv a row per cell (its summary); neither mixes the
// two, so a column's mean counts nothing twice. Their columns carry their
// units and have results.json's names; every row says its run length,
// pCPU count and reference.

// csvKey are the columns that say which cell (or reference) a row is.
var csvKey = []string{"vcpus", "vms", "lock", "variant", "policy", "shard"}

// csvMeasures are a run's measures (measures), as in results.json, with
// acq_max_over_min_unbounded after acq_max_over_min.
func csvMeasures() []string {
	var h []string
	for _, ms := range measures() {
		h = append(h, ms.name)
		if ms.name == "acq_max_over_min" {
			h = append(h, "acq_max_over_min_unbounded")
		}
	}
	return h
}

func csvG(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }

// csv is m's measures in csvMeasures' order: empty where not measured, and
// acq_max_over_min empty where unbounded (a vCPU took no lock), which
// acq_max_over_min_unbounded says.
func (m Measured) csv() []string {
	var rec []string
	for _, ms := range measures() {
		rec = append(rec, ms.csvValue(&m))
		if ms.name == "acq_max_over_min" {
			x, _ := ms.get(&m)
			rec = append(rec, strconv.FormatBool(math.IsInf(x, 1)))
		}
	}
	return rec
}

// csvCommon are the columns every row has: run length, pCPUs, reference.
func (res *Results) csvCommon(ref *Reference) []string {
	d, _ := time.ParseDuration(res.Matrix.Duration)
	refOps := ""
	if ref != nil {
		refOps = csvG(ref.OpsPerSec)
	}
	return []string{csvG(d.Seconds()), strconv.Itoa(len(res.Meta.PCPUs)), refOps}
}

var csvCommonHead = []string{"duration_s", "pcpus", "ref_acq_per_s"}

// writeRunsCSV writes runs.csv: kind is "cell", "reference_before" or
// "reference_after"; run is the run's number within its cell or reference.
func (res *Results) writeRunsCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append([]string{"kind"}, csvKey...), "run", "seed", "ok", "refused", "acq_per_s", "throughput", "whole_run_acq_per_s", "vs_ref")
	head = append(append(append(head, csvCommonHead...), csvMeasures()...), "error")
	_ = cw.Write(head)
	row := func(kind string, key []string, ref *Reference, i int, r RunResult) {
		vs := ""
		if ref != nil && ref.OpsPerSec > 0 {
			vs = csvG(r.OpsPerSec / ref.OpsPerSec)
		}
		rec := append(append([]string{kind}, key...), strconv.Itoa(i+1), strconv.FormatUint(r.Seed, 10), strconv.FormatBool(r.OK),
			strconv.FormatBool(r.Refused), csvG(r.OpsPerSec), r.Throughput, csvG(r.WholeOpsPerSec), vs)
		rec = append(append(append(rec, res.csvCommon(ref)...), r.Measured.csv()...), r.Error)
		_ = cw.Write(rec)
	}
	for k := range res.References {
		ref := &res.References[k]
		key := []string{"2", "1", "ticket", "", "rr", strconv.Itoa(ref.Shard)}
		for i, r := range ref.Before {
			row("reference_before", key, ref, i, r)
		}
		for i, r := range ref.After {
			row("reference_after", key, ref, i, r)
		}
	}
	for _, c := range res.Cells {
		ref := res.Reference(c.Shard)
		for i, r := range c.Runs {
			row("cell", c.csvKey(), ref, i, r)
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeCellsCSV writes cells.csv: each cell's summary (SummaryRule).
func (res *Results) writeCellsCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append([]string{}, csvKey...), "runs", "ok", "refused", "acq_per_s", "min_acq_per_s", "max_acq_per_s", "vs_ref", "vs_ref_ci95_lo", "vs_ref_ci95_hi")
	head = append(append(append(head, csvCommonHead...), csvMeasures()...), "noisy", "error")
	// Then each median's interval (Cell.CI95), in the same order.
	var ciNames []string
	for _, m := range append([]string{"acq_per_s"}, csvMeasures()...) {
		if m != "acq_max_over_min_unbounded" {
			ciNames = append(ciNames, m)
			head = append(head, m+"_ci95_lo", m+"_ci95_hi")
		}
	}
	_ = cw.Write(head)
	for _, c := range res.Cells {
		rec := append(c.csvKey(), strconv.Itoa(len(c.Runs)), strconv.FormatBool(c.OK), strconv.FormatBool(c.Refused))
		measured := c.Measured.csv()
		if c.OK {
			rec = append(rec, csvG(c.OpsPerSec), csvG(c.MinOpsPerSec), csvG(c.MaxOpsPerSec), csvG(c.Relative))
		} else {
			// A failed or refused cell measured nothing: empty, never 0.
			rec = append(rec, "", "", "", "")
			measured = make([]string, len(measured))
		}
		lo, hi := "", ""
		if ci := c.VsRefCI95; ci != nil && c.OK {
			lo, hi = csvG(ci[0]), csvG(ci[1])
		}
		rec = append(rec, lo, hi)
		rec = append(append(append(rec, res.csvCommon(res.Reference(c.Shard))...), measured...),
			strconv.FormatBool(c.Noisy), c.Error)
		for _, m := range ciNames {
			if ci := c.CI95[m]; ci != nil && c.OK {
				rec = append(rec, csvG(ci[0]), csvG(ci[1]))
			} else {
				rec = append(rec, "", "")
			}
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

func (c Cell) csvKey() []string {
	return []string{strconv.Itoa(c.VCPUs), strconv.Itoa(c.VMs), c.Lock, c.Variant, c.Policy, strconv.Itoa(c.Shard)}
}

// ReadResults reads the results.json of an --out directory.
func ReadResults(dir string) (*Results, error) {
	path := filepath.Join(dir, ResultsFile)
	b, err := host.ReadFileLimited(path, 64<<20)
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errkind.Usage(err) // not an --out directory
	case errors.As(err, &pe):
		return nil, errkind.IO(path, err) // one that cannot be read
	case err != nil:
		return nil, errkind.Usage(err) // not a regular file, too large
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, errkind.Usagef("%s: not lhpvm results: %w", path, err)
	}
	if len(res.Shards) == 0 {
		return nil, errkind.Usagef("%s: no shards recorded: not lhpvm experiment results", dir)
	}
	return &res, nil
}

// Merge joins the results of the shards of one sweep: all of 1..N, each
// once, over the same matrix. The cells keep their own shard's reference
// (ratios only hold within one machine).
func Merge(dirs []string) (*Results, error) {
	var parts []*Results
	for _, d := range dirs {
		r, err := ReadResults(d)
		if err != nil {
			return nil, err
		}
		parts = append(parts, r)
	}
	if len(parts) == 0 {
		return nil, errkind.Usage(errors.New("no shard directories given"))
	}
	for k, p := range parts {
		if err := p.check(); err != nil {
			return nil, errkind.Usagef("%s: %w", dirs[k], err)
		}
	}
	first := parts[0]
	n := first.Shards[0].N
	seen := map[int]string{}
	out := &Results{Meta: first.Meta, Matrix: first.Matrix, Complete: true}
	hosts := map[string]bool{}
	for k, p := range parts {
		if !p.Matrix.equal(first.Matrix) {
			return nil, errkind.Usagef("%s measured another matrix than %s (locks, policies, sizes or run parameters differ): not shards of one sweep", dirs[k], dirs[0])
		}
		// Shards measured by different code, backends, CPUs or pCPU
		// lists do not make one table.
		for _, d := range []struct{ what, a, b string }{
			{"commit", p.Meta.Commit, first.Meta.Commit},
			{"backend", p.Meta.BackendName(), first.Meta.BackendName()},
			{"CPU model", p.Meta.CPUModel, first.Meta.CPUModel},
			{"pCPUs", fmt.Sprint(p.Meta.PCPUs), fmt.Sprint(first.Meta.PCPUs)},
		} {
			if d.a != d.b {
				return nil, errkind.Usagef("%s was measured with %s %s, %s with %s: shards of one table share commit, backend, CPU model and pCPUs", dirs[k], d.what, d.a, dirs[0], d.b)
			}
		}
		hosts[p.Meta.Host] = true
		for _, s := range p.Shards {
			if s.N != n {
				return nil, errkind.Usagef("%s is shard %v, %s one of %d: not shards of one sweep", dirs[k], s, dirs[0], n)
			}
			if d, dup := seen[s.I]; dup {
				return nil, errkind.Usagef("shard %d/%d is in both %s and %s", s.I, n, d, dirs[k])
			}
			seen[s.I] = dirs[k]
			out.Shards = append(out.Shards, s)
		}
		out.References = append(out.References, p.References...)
		out.Cells = append(out.Cells, p.Cells...)
		if p.Meta.Start.Before(out.Meta.Start) {
			out.Meta.Start = p.Meta.Start
		}
		if p.Meta.End.After(out.Meta.End) {
			out.Meta.End = p.Meta.End
		}
	}
	var missing []string
	for i := 1; i <= n; i++ {
		if _, ok := seen[i]; !ok {
			missing = append(missing, fmt.Sprintf("%d/%d", i, n))
		}
	}
	if len(missing) > 0 {
		return nil, errkind.Usagef("missing shards %s", strings.Join(missing, ", "))
	}
	// Cells back in the canonical order, and exactly the matrix's.
	order := map[CellKey]int{}
	for i, k := range first.Matrix.Cells() {
		order[k] = i
	}
	if len(out.Cells) != len(order) {
		return nil, errkind.Usagef("the shards hold %d cells, the matrix has %d", len(out.Cells), len(order))
	}
	for _, c := range out.Cells {
		if _, ok := order[c.CellKey]; !ok {
			return nil, errkind.Usagef("cell %v is not in the matrix", c.CellKey)
		}
	}
	sort.Slice(out.Cells, func(i, j int) bool { return order[out.Cells[i].CellKey] < order[out.Cells[j].CellKey] })
	for i := 1; i < len(out.Cells); i++ {
		if out.Cells[i].CellKey == out.Cells[i-1].CellKey {
			return nil, errkind.Usagef("cell %v is in two shards", out.Cells[i].CellKey)
		}
	}
	sort.Slice(out.Shards, func(i, j int) bool { return out.Shards[i].I < out.Shards[j].I })
	sort.Slice(out.References, func(i, j int) bool { return out.References[i].Shard < out.References[j].Shard })
	if len(hosts) > 1 {
		var hs []string
		for h := range hosts {
			hs = append(hs, h)
		}
		sort.Strings(hs)
		out.Meta.Host = strings.Join(hs, ", ") // each cell against its own host's reference
	}
	// Every summary recomputed from the runs, never taken from a file.
	for i := range out.References {
		out.References[i].Summarize()
	}
	for i := range out.Cells {
		out.Cells[i].Summarize(out.Reference(out.Cells[i].Shard))
	}
	out.Comparisons = out.compare() // a pair's cells may come from two shards
	return out, nil
}

// check refuses results that no experiment writes (a damaged or crafted
// file): a shard that is not I/N, an unfinished experiment, a shard
// without its reference, a cell of no shard, a run with a negative or
// non-finite throughput, or both ok and refused.
func (res *Results) check() error {
	mine := map[int]bool{}
	for _, s := range res.Shards {
		if s.N < 1 || s.N > 10000 || s.I < 1 || s.I > s.N {
			return fmt.Errorf("shard %v is not I/N with 1 <= I <= N <= 10000", s)
		}
		mine[s.I] = true
		if r := res.Reference(s.I); r == nil || len(r.all()) == 0 {
			return fmt.Errorf("shard %v has no reference runs", s)
		}
	}
	if !res.Complete {
		return errors.New("the experiment did not finish (stopped, or still running): finish it with lhpvm experiment --resume DIR")
	}
	bad := func(r RunResult) string {
		for _, x := range []float64{r.OpsPerSec, r.WholeOpsPerSec, r.ElapsedS} {
			if x < 0 || math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Sprintf("a throughput or time of %g", x)
			}
		}
		if r.OK && r.Refused {
			return "both ok and refused"
		}
		return ""
	}
	for _, ref := range res.References {
		for _, r := range ref.all() {
			if why := bad(r); why != "" {
				return fmt.Errorf("a reference run of shard %d has %s", ref.Shard, why)
			}
		}
	}
	for _, c := range res.Cells {
		if !mine[c.Shard] {
			return fmt.Errorf("cell %v is of shard %d, which these results do not hold", c.CellKey, c.Shard)
		}
		if len(c.Runs) == 0 {
			return fmt.Errorf("cell %v has no runs", c.CellKey)
		}
		for i, r := range c.Runs {
			if why := bad(r); why != "" {
				return fmt.Errorf("run %d of cell %v has %s", i+1, c.CellKey, why)
			}
		}
	}
	return nil
}
