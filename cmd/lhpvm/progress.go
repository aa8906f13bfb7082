package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows an experiment's progress: on a terminal a bar with the runs
// done, the current cell and an ETA (schollz/progressbar, redrawn in place);
// otherwise one line per finished run, and no carriage return ever; with
// --quiet nothing.
type progress struct {
	w      io.Writer
	bar    *progressbar.ProgressBar
	quiet  bool
	n, all int
}

func newProgress(w io.Writer, all int, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, all: all}
	if f, ok := w.(*os.File); ok && !quiet && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(all,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("starting"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("runs"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionClearOnFinish())
	}
	return p
}

// Start says which run is under way.
func (p *progress) Start(what string) {
	if p.bar != nil {
		p.bar.Describe(what)
	}
}

// Done counts a finished run; line says how it went.
func (p *progress) Done(line string, ok bool) {
	p.n++
	switch {
	case p.bar != nil:
		_ = p.bar.Add(1)
		if !ok { // failures stay on the screen above the bar
			_ = p.bar.Clear()
			fmt.Fprintf(p.w, "%s\n", line)
		}
	case !p.quiet && p.n > p.all: // --precision's extra rounds: not planned
		fmt.Fprintf(p.w, "[%d/%d+] %s\n", p.n, p.all, line)
	case !p.quiet:
		fmt.Fprintf(p.w, "[%d/%d] %s\n", p.n, p.all, line)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
