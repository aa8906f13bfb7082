// Package figures draws lhpvm's pictures with gonum/plot: the slides'
// timelines from a real run (Timeline), and an experiment's plots. It only
// draws: the data comes from vmm and cmd/lhpvm.
package figures

import (
	"fmt"
	"image/color"
	"time"

	"github.com/lhpvm/lhpvm/sched"
	"github.com/lhpvm/lhpvm/vmm"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Palette colours the VMs (Okabe-Ito: distinguishable for colour-blind
// readers), idle time and the marks.
var (
	Palette = []color.Color{
		color.RGBA{0x00, 0x72, 0xb2, 0xff}, // blue
		color.RGBA{0xe6, 0x9f, 0x00, 0xff}, // orange
		color.RGBA{0x00, 0x9e, 0x73, 0xff}, // green
		color.RGBA{0xcc, 0x79, 0xa7, 0xff}, // purple
		color.RGBA{0x56, 0xb4, 0xe9, 0xff}, // sky
		color.RGBA{0xd5, 0x5e, 0x00, 0xff}, // vermillion
		color.RGBA{0xf0, 0xe4, 0x42, 0xff}, // yellow
	}
	idleColor = color.RGBA{0xe8, 0xe8, 0xe8, 0xff}
	lhpColor  = color.RGBA{0xc0, 0x00, 0x00, 0xff}
	lwpColor  = color.RGBA{0x70, 0x00, 0x70, 0xff}
)

func vmColor(i int) color.Color { return Palette[i%len(Palette)] }

// gantt is a plot.Plotter: one row per pCPU (row 0 at the top), a bar per
// slice in its VM's colour with the vCPU's name in it, idle rows behind.
type gantt struct {
	tl   *vmm.Timeline
	font font.Font
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// row is the y value of pCPU p (the top row is pCPU 0).
func (g gantt) row(p int) float64 { return float64(len(g.tl.PCPUs) - 1 - p) }

func (g gantt) DataRange() (xmin, xmax, ymin, ymax float64) {
	return ms(g.tl.From), ms(g.tl.To), -0.5, float64(len(g.tl.PCPUs)) - 0.5
}

func (g gantt) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	const half = 0.36 // of a row
	box := func(x0, x1, y float64, clr color.Color) {
		c.FillPolygon(clr, c.ClipPolygonXY([]vg.Point{
			{X: trX(x0), Y: trY(y - half)}, {X: trX(x1), Y: trY(y - half)},
			{X: trX(x1), Y: trY(y + half)}, {X: trX(x0), Y: trY(y + half)}}))
	}
	for i := range g.tl.PCPUs {
		box(ms(g.tl.From), ms(g.tl.To), g.row(i), idleColor) // what no slice covers is idle
	}
	label := draw.TextStyle{Color: color.White, Font: g.font, Handler: p.Title.TextStyle.Handler,
		XAlign: draw.XCenter, YAlign: draw.YCenter}
	for _, s := range g.tl.Slices {
		y := g.row(s.PCPU)
		box(ms(s.Start), ms(s.End), y, vmColor(s.VM))
		name := fmt.Sprintf("%s/cpu%d", g.tl.VMs[s.VM], s.VCPU)
		x0, x1 := trX(ms(s.Start)), trX(ms(s.End))
		if x1-x0 > label.Width(name)+vg.Points(4) {
			c.FillText(label, vg.Point{X: (x0 + x1) / 2, Y: trY(y)}, name)
		}
	}
	for _, h := range Waste(g.tl) {
		y := g.row(h.PCPU)
		stripes(c, trX(ms(h.From)), trX(ms(h.To)), trY(y-half), trY(y+half))
	}
	for _, m := range g.tl.Marks {
		clr, dy := lhpColor, 0.0
		if m.Kind == sched.MarkLWP {
			clr, dy = lwpColor, 0.08
		}
		x, y := trX(ms(m.At)), trY(g.row(m.PCPU)+half+0.04+dy)
		c.DrawGlyph(draw.GlyphStyle{Color: clr, Radius: vg.Points(4), Shape: draw.PyramidGlyph{}}, vg.Point{X: x, Y: y})
	}
}

// WasteSpan is a stretch of a pCPU row the picture hatches: a vCPU ran
// there while its lock was with a sibling that did not run.
type WasteSpan struct {
	PCPU     int
	From, To time.Duration
}

// Waste is what the timeline hatches: every part of a slice during which
// the lock was measured to be with a sibling that did not run (held, or
// handed to it), when the slice's vCPU was waiting for that lock as it
// left its pCPU or took no lock at all in it, i.e. spun for it.
func Waste(tl *vmm.Timeline) []WasteSpan {
	var out []WasteSpan
	for _, s := range tl.Slices {
		for _, h := range tl.HoldersOff() {
			if h.VM != s.VM || h.VCPU == s.VCPU || h.To <= s.Start || h.From >= s.End {
				continue
			}
			if s.WaitingFor == int(h.Lock) || s.Acquired == 0 {
				out = append(out, WasteSpan{PCPU: s.PCPU, From: max(s.Start, h.From), To: min(s.End, h.To)})
			}
		}
	}
	return out
}

// stripes hatches a box: a slice its vCPU spent waiting for a lock.
func stripes(c draw.Canvas, x0, x1, y0, y1 vg.Length) {
	sty := draw.LineStyle{Color: color.RGBA{0x20, 0x20, 0x20, 0xff}, Width: vg.Points(0.8)}
	step := vg.Points(5)
	for x := x0 - (y1 - y0); x < x1; x += step {
		seg := c.ClipLinesXY([]vg.Point{{X: max(x, x0), Y: y0 + (max(x, x0) - x)}, {X: min(x+(y1-y0), x1), Y: y0 + (min(x+(y1-y0), x1) - x)}})
		c.StrokeLines(sty, seg...)
	}
}

// swatch is a legend entry's coloured box or mark.
type swatch struct {
	clr     color.Color
	glyph   bool
	striped bool
}

func (s swatch) Thumbnail(c *draw.Canvas) {
	if s.glyph {
		c.DrawGlyph(draw.GlyphStyle{Color: s.clr, Radius: vg.Points(4), Shape: draw.PyramidGlyph{}}, c.Center())
		return
	}
	r := c.Rectangle
	c.FillPolygon(s.clr, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
	if s.striped {
		stripes(*c, r.Min.X, r.Max.X, r.Min.Y, r.Max.Y)
	}
}

// Timeline draws tl as an SVG (or any format gonum/plot writes, by the
// extension of path): pCPU rows against milliseconds, one colour per VM,
// idle gaps grey, LHP and LWP preemptions marked above the row.
func Timeline(tl *vmm.Timeline, title, path string) error {
	if len(tl.PCPUs) == 0 {
		return fmt.Errorf("the timeline has no pCPUs")
	}
	p := newPlot(title)
	p.X.Label.Text = "time since the start of scheduling (ms)"
	rows := make([]string, len(tl.PCPUs))
	for i, cpu := range tl.PCPUs {
		rows[len(tl.PCPUs)-1-i] = fmt.Sprintf("pCPU %d (CPU %d)", i, cpu)
	}
	g := gantt{tl: tl, font: p.Legend.TextStyle.Font}
	g.font.Size = vg.Points(7)
	p.Add(g)
	p.NominalY(rows...)
	p.Y.Padding = 0
	// The legend gets a strip of its own right of the plot: inside, it
	// would cover slices.
	leg := plot.NewLegend()
	var labels []string
	add := func(label string, thumbs ...plot.Thumbnailer) {
		leg.Add(label, thumbs...)
		labels = append(labels, label)
	}
	for i, name := range tl.VMs {
		add(name, swatch{clr: vmColor(i)})
	}
	add("idle", swatch{clr: idleColor})
	add("spinning: its lock is", swatch{clr: color.RGBA{0x80, 0x80, 0x80, 0xff}, striped: true})
	add("with a sibling that")
	add("does not run")
	add(string(sched.MarkLHP), swatch{clr: lhpColor, glyph: true})
	add(string(sched.MarkLWP), swatch{clr: lwpColor, glyph: true})
	leg.Top, leg.Left = true, true
	const width = 820
	legendWidth := legendWidth(&leg, labels)
	height := vg.Points(max(110+40*float64(len(tl.PCPUs)), float64(leg.Rectangle(draw.Canvas{}).Size().Y)+40))
	return render(path, vg.Points(width), height, func(dc draw.Canvas) {
		p.Draw(draw.Crop(dc, 0, -legendWidth-vg.Points(8), 0, 0))
		leg.Draw(draw.Crop(dc, dc.Size().X-legendWidth, 0, 0, -vg.Points(24)))
	})
}

// legendWidth is how wide a strip leg needs for its entries' labels: the
// widest, its thumbnail and its padding, measured with its font.
func legendWidth(leg *plot.Legend, labels []string) vg.Length {
	var w vg.Length
	for _, l := range labels {
		w = max(w, leg.TextStyle.Width(l))
	}
	return w + leg.ThumbnailWidth + leg.Padding*2 + vg.Points(6)
}
