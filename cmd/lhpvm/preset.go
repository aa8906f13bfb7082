package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/lhpvm/lhpvm/internal/atomicfile"
	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/host"
	"github.com/lhpvm/lhpvm/internal/sweep"
)

// runPreset runs experiment --preset: each part of the preset as an
// experiment, its tables, then the preset's report (and --doc).
func runPreset(out, errOut io.Writer, f expFlags) error {
	if f.preset == "" {
		return errkind.Usagef("--doc needs --preset")
	}
	if f.preset == "list" && len(f.given) > 1 {
		return errkind.Usagef("--preset list takes no other flag (it only describes the presets)")
	}
	if f.Changed("repeat") && f.Repeat < 1 {
		return errkind.Usagef("--repeat %d: at least 1", f.Repeat)
	}
	if f.Changed("duration") && f.Duration <= 0 {
		return errkind.Usagef("--duration %v: a positive length", f.Duration)
	}
	if f.preset == "list" {
		for _, p := range sweep.Presets {
			fmt.Fprintf(out, "%s\n  claim:  %s\n  source: %s\n", p.Name, p.Claim, p.Source)
			for _, part := range p.Parts {
				fmt.Fprintf(out, "  part %s: %s\n", part.Name, part.Doc)
			}
		}
		return nil
	}
	for _, name := range f.given {
		if !slices.Contains(sweep.PresetFlags, name) {
			return errkind.Usagef("--%s: a preset runs its own matrix (with --preset give only --%s)", name, strings.Join(sweep.PresetFlags[1:], ", --"))
		}
	}
	p, err := sweep.LookupPreset(f.preset)
	if err != nil {
		return errkind.Usage(err)
	}
	if f.resume != "" {
		if f.Changed("out") && f.Out != f.resume {
			return errkind.Usagef("--resume %s with --out %s: a resumed preset writes where it first did", f.resume, f.Out)
		}
		f.Out = f.resume
	}
	ov := sweep.PresetOverrides{Backend: f.Backend, PCPUs: f.PCPUs, Out: f.Out}
	if f.Changed("duration") {
		ov.Duration = f.Duration
	}
	if f.Changed("repeat") {
		ov.Repeat = f.Repeat
	}
	if f.Changed("precision") || f.Changed("budget") {
		ov.Precision, ov.Budget = f.Precision, f.Budget
	}
	total, err := p.Runs(ov)
	if err != nil {
		return err
	}
	const docLimit = 16 << 20
	if f.doc != "" { // before an experiment of minutes, not after
		doc, err := host.ReadFileLimited(f.doc, docLimit)
		if err != nil {
			return errkind.IO(f.doc, fmt.Errorf("--doc: %w", err))
		}
		if err := sweep.CheckDoc(doc, p.Name); err != nil {
			return errkind.Usage(fmt.Errorf("--doc %s: %w", f.doc, err))
		}
		// The new document is about the old one's size: a disk that cannot
		// take it twice over is found now.
		if err := atomicfile.CheckReplaceable(f.doc, 2*int64(len(doc))+64<<10); err != nil {
			return errkind.IO(f.doc, fmt.Errorf("--doc %s cannot be replaced: %w", f.doc, err))
		}
	}
	// Each part is an experiment of its own in --out/PART. A new preset
	// needs them new or empty (--force replaces them); --resume keeps the
	// parts that finished, finishes the one that was stopped and runs the
	// rest.
	plans := make([]*sweep.Plan, len(p.Parts))
	done := map[string]*sweep.Results{}
	for i, part := range p.Parts {
		plan, err := sweep.Check(part.With(ov))
		if err != nil {
			return err
		}
		if plan.Out != "" {
			res, rerr := sweep.ReadResults(plan.Out)
			switch {
			case f.resume != "" && rerr == nil && res.Complete:
				done[part.Name] = res
			case f.resume != "" && rerr == nil:
				if plan, err = sweep.Resume(plan.Out); err != nil {
					return err
				}
			default:
				if err := sweep.PrepareOut(plan.Out, f.force); err != nil {
					return err
				}
			}
		}
		plans[i] = plan
	}
	h, meta, err := openSweep(f.Backend)
	if err != nil {
		return err
	}
	defer h.Close()
	st := newStopper(errOut, h)
	defer st.release()
	var cpus []int
	for _, plan := range plans {
		cpus = append(cpus, plan.PCPUs...)
	}
	lk, err := lockPCPUs(errOut, cpus, st.stop)
	if err != nil {
		return err
	}
	defer lk.Release()
	prog := newProgress(errOut, total, f.quiet)
	results := map[string]*sweep.Results{}
	var failed []string
	for i, part := range p.Parts {
		if res := done[part.Name]; res != nil {
			results[part.Name] = res
			continue
		}
		plan := plans[i]
		if err := plan.MakeDirs(); err != nil {
			prog.finish()
			return err
		}
		plan.Stop = st.stop
		var j *sweep.Journal
		if plan.Out != "" {
			if j, err = sweep.OpenJournal(plan.Out); err != nil {
				prog.finish()
				return err
			}
			plan.Journal = j.Record
		}
		res, err := plan.Run(st.run, prog, meta)
		if j != nil {
			j.Close()
		}
		if errors.Is(err, sweep.ErrInterrupted) {
			prog.finish()
			how := "no --out: nothing was kept"
			if plan.Out != "" {
				if werr := res.Write(plan.Out); werr != nil {
					return werr
				}
				how = fmt.Sprintf("resume it with: lhpvm experiment --preset %s --resume %s", p.Name, f.Out)
			}
			fmt.Fprintf(errOut, "interrupted in part %s; --doc left alone; %s\n", part.Name, how)
			return errkind.Interrupted(errors.New("interrupted"))
		}
		if err != nil {
			prog.finish()
			return fmt.Errorf("part %s: %w", part.Name, err)
		}
		if plan.Out != "" {
			if err := res.Write(plan.Out); err != nil {
				prog.finish()
				return fmt.Errorf("--out %s: %w", plan.Out, err)
			}
		}
		results[part.Name] = res
	}
	for _, part := range p.Parts {
		for _, c := range results[part.Name].Failed() {
			failed = append(failed, part.Name+": "+c)
		}
	}
	prog.finish()
	report := sweep.PresetReport(p, results)
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Preset string                    `json:"preset"`
			Claim  string                    `json:"claim"`
			Source string                    `json:"source"`
			Parts  map[string]*sweep.Results `json:"parts"`
			Report string                    `json:"report"`
		}{p.Name, p.Claim, p.Source, results, report}); err != nil {
			return err
		}
	} else {
		for _, part := range p.Parts {
			fmt.Fprintf(out, "## %s / %s: %s\n\n", p.Name, part.Name, part.Doc)
			printResults(out, results[part.Name])
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "## %s\n\nClaim: %s.\nSource: %s.\n\n%s", p.Name, p.Claim, p.Source, report)
	}
	switch {
	case f.doc != "" && len(failed) > 0:
		fmt.Fprintf(errOut, "--doc %s left alone: %d cells failed, and a document keeps only whole results\n", f.doc, len(failed))
	case f.doc != "":
		doc, err := host.ReadFileLimited(f.doc, docLimit)
		if err == nil {
			if doc, err = sweep.ReplaceDoc(doc, p.Name, report); err == nil {
				err = atomicfile.WriteBytes(f.doc, doc) // a full disk leaves the old document whole
			}
		}
		if err != nil {
			return errkind.IO(f.doc, fmt.Errorf("--doc %s (left as it was): %w", f.doc, err))
		}
		fmt.Fprintf(errOut, "wrote the report of %s into %s\n", p.Name, f.doc)
	}
	if len(failed) > 0 {
		return errkind.Run(fmt.Errorf("%d cells failed: %s", len(failed), strings.Join(failed, "; ")))
	}
	return nil
}
