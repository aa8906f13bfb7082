package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/lhpvm/lhpvm/internal/errkind"
	"github.com/lhpvm/lhpvm/internal/sweep"
	"github.com/lhpvm/lhpvm/vmm"
)

// runPreset runs experiment --preset: each part of the preset as an
// experiment, its tables, then the preset's report (and --doc).
func runPreset(out, errOut io.Writer, f expFlags) error {
	if f.preset == "" {
		return errkind.Usagef("--doc needs --preset")
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
	if f.doc != "" { // before an experiment of minutes, not after
		doc, err := os.ReadFile(f.doc)
		if err != nil {
			return errkind.IO(f.doc, fmt.Errorf("--doc: %w", err))
		}
		if err := sweep.CheckDoc(doc, p.Name); err != nil {
			return errkind.Usage(fmt.Errorf("--doc %s: %w", f.doc, err))
		}
	}
	h, meta, err := openSweep(f.Backend)
	if err != nil {
		return err
	}
	defer h.Close()
	prog := newProgress(errOut, total, f.quiet)
	results := map[string]*sweep.Results{}
	var failed []string
	for _, part := range p.Parts {
		plan, err := sweep.Check(part.With(ov))
		if err != nil {
			prog.finish()
			return err
		}
		if err := plan.MakeDirs(); err != nil {
			prog.finish()
			return err
		}
		res, err := plan.Run(func(mc vmm.MachineConfig, cfgs ...vmm.Config) *vmm.Result { return runMachine(h, mc, cfgs...) }, prog, meta)
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
		for _, c := range res.Failed() {
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
	if f.doc != "" {
		doc, err := os.ReadFile(f.doc)
		if err == nil {
			if doc, err = sweep.ReplaceDoc(doc, p.Name, report); err == nil {
				err = os.WriteFile(f.doc, doc, 0o644)
			}
		}
		if err != nil {
			return errkind.IO(f.doc, fmt.Errorf("--doc %s: %w", f.doc, err))
		}
	}
	if len(failed) > 0 {
		return errkind.Run(fmt.Errorf("%d cells failed: %s", len(failed), strings.Join(failed, "; ")))
	}
	return nil
}
