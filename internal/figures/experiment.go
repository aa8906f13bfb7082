package figures

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Bars is a grouped bar chart: one group per Groups entry, one bar per
// Series entry in each; Values[series][group], NaN where a cell did not run.
type Bars struct {
	Title, XLabel, YLabel string
	Groups                []string
	Series                []string
	Values                [][]float64
	// RefLine draws a dashed line at this value (e.g. 1: the reference);
	// 0: none.
	RefLine float64
	// Lo and Hi, when set, are each bar's interval (same shape as Values;
	// NaN: none), drawn as an error bar.
	Lo, Hi [][]float64
}

// errBars draws one series' intervals over its bars, offset as they are.
type errBars struct {
	lo, hi []float64
	offset vg.Length
}

func (e errBars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	st := draw.LineStyle{Color: color.Black, Width: vg.Points(0.8)}
	half := vg.Points(3)
	for g := range e.lo {
		lo, hi := e.lo[g], e.hi[g]
		if math.IsNaN(lo) || math.IsNaN(hi) {
			continue
		}
		x := trX(float64(g)) + e.offset
		y0, y1 := trY(lo), trY(math.Min(hi, p.Y.Max))
		c.StrokeLine2(st, x, y0, x, y1)
		c.StrokeLine2(st, x-half, y0, x+half, y0)
		if hi <= p.Y.Max {
			c.StrokeLine2(st, x-half, y1, x+half, y1)
		}
	}
}

// BarChart draws b to path (the format by its extension).
func BarChart(b Bars, path string) error {
	p := newPlot(b.Title)
	p.Y.Label.Text = b.YLabel
	p.X.Label.Text = b.XLabel
	p.Y.Min = 0
	n := float64(len(b.Series))
	w := vg.Points(min(18, 300/math.Max(1, n*float64(len(b.Groups)))))
	// The legend gets a strip of its own right of the plot: inside, it
	// would run over the bars.
	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	var errs []errBars
	for i, name := range b.Series {
		vals := make(plotter.Values, len(b.Groups))
		for g := range b.Groups {
			v := b.Values[i][g]
			if math.IsNaN(v) {
				v = 0 // refused or failed: no bar
			}
			vals[g] = v
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = vmColor(i)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-(n-1)/2)
		p.Add(bars)
		leg.Add(name, bars)
		if b.Lo != nil && b.Hi != nil {
			errs = append(errs, errBars{lo: b.Lo[i], hi: b.Hi[i], offset: bars.Offset})
		}
	}
	for _, e := range errs { // over every bar
		p.Add(e)
	}
	if b.RefLine > 0 {
		line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: b.RefLine}, {X: float64(len(b.Groups)) - 0.5, Y: b.RefLine}})
		if err != nil {
			return err
		}
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		line.Color = color.Gray{0x60}
		p.Add(line)
	}
	top := b.RefLine
	for _, vs := range b.Values {
		for _, v := range vs {
			if !math.IsNaN(v) {
				top = math.Max(top, v)
			}
		}
	}
	// Room above the tallest bar and the reference line; an interval may
	// reach up to 3 times the tallest bar, past that it is cut (no cap).
	bar := top
	for i := range b.Hi {
		for _, v := range b.Hi[i] {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = math.Max(top, math.Min(v, 3*bar))
			}
		}
	}
	p.Y.Max = top * 1.1
	p.NominalX(b.Groups...)
	// Half a group of room at either end: bars clear of the axes.
	p.X.Min, p.X.Max = -0.75, float64(len(b.Groups))-0.25
	lw := legendWidth(&leg, b.Series)
	width := vg.Points(max(480, 60+float64(len(b.Groups))*float64(w)*(n+1.5))) + lw
	height := vg.Points(max(300, float64(leg.Rectangle(draw.Canvas{}).Size().Y)+60))
	return render(path, width, height, func(dc draw.Canvas) {
		p.Draw(draw.Crop(dc, 0, -lw-vg.Points(8), 0, 0))
		leg.Draw(draw.Crop(dc, dc.Size().X-lw, 0, 0, -vg.Points(24)))
	})
}

// Heat is a matrix of values drawn as coloured cells with their value in
// them; NaN cells are left blank.
type Heat struct {
	Title          string
	XLabel, YLabel string
	Rows, Cols     []string
	Values         [][]float64 // [row][col]
	Min, Max       float64     // the colour scale
	ScaleLabel     string      // what the colours measure
}

type heat struct {
	h    Heat
	cmap interface {
		At(float64) (color.Color, error)
	}
}

func (h heat) DataRange() (xmin, xmax, ymin, ymax float64) {
	return -0.5, float64(len(h.h.Cols)) - 0.5, -0.5, float64(len(h.h.Rows)) - 0.5
}

func (h heat) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	sty := draw.TextStyle{Color: color.Black, Font: p.Legend.TextStyle.Font, Handler: p.Title.TextStyle.Handler,
		XAlign: draw.XCenter, YAlign: draw.YCenter}
	sty.Font.Size = vg.Points(7)
	for r := range h.h.Rows {
		y := float64(len(h.h.Rows) - 1 - r)
		for col := range h.h.Cols {
			v := h.h.Values[r][col]
			if math.IsNaN(v) {
				continue
			}
			clr, err := h.cmap.At(math.Min(math.Max(v, h.h.Min), h.h.Max))
			if err != nil {
				continue
			}
			x := float64(col)
			c.FillPolygon(clr, []vg.Point{{X: trX(x - 0.5), Y: trY(y - 0.5)}, {X: trX(x + 0.5), Y: trY(y - 0.5)},
				{X: trX(x + 0.5), Y: trY(y + 0.5)}, {X: trX(x - 0.5), Y: trY(y + 0.5)}})
			c.FillText(sty, vg.Point{X: trX(x), Y: trY(y)}, fmt.Sprintf("%.2f", v))
		}
	}
}

// colorScale draws a colour map as a vertical bar of bands over [min,
// max], as vector shapes (gonum's ColorBar is an image one pixel wide,
// which SVG viewers keep one pixel wide, for its aspect ratio).
type colorScale struct {
	cmap interface {
		At(float64) (color.Color, error)
	}
	min, max float64
}

func (s colorScale) DataRange() (xmin, xmax, ymin, ymax float64) { return 0, 1, s.min, s.max }

func (s colorScale) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	const bands = 64
	step := (s.max - s.min) / bands
	for i := 0; i < bands; i++ {
		lo := s.min + float64(i)*step
		clr, err := s.cmap.At(lo + step/2)
		if err != nil {
			continue
		}
		c.FillPolygon(clr, []vg.Point{{X: trX(0), Y: trY(lo)}, {X: trX(1), Y: trY(lo)},
			{X: trX(1), Y: trY(lo + step*1.05)}, {X: trX(0), Y: trY(lo + step*1.05)}}) // overlap: no seams
	}
}

// Heatmap draws h to path: rows top to bottom, a diverging blue-red scale
// with its colour bar and ticks on the right.
func Heatmap(h Heat, path string) error {
	p := newPlot(h.Title)
	p.X.Label.Text, p.Y.Label.Text = h.XLabel, h.YLabel
	cmap := moreland.SmoothBlueRed()
	cmap.SetMin(h.Min)
	cmap.SetMax(h.Max)
	p.Add(heat{h: h, cmap: cmap})
	p.NominalX(h.Cols...)
	rows := make([]string, len(h.Rows))
	for i, r := range h.Rows {
		rows[len(h.Rows)-1-i] = r
	}
	p.NominalY(rows...)
	p.X.Tick.Label.Rotation = math.Pi / 4
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	var longest vg.Length
	for _, c := range h.Cols {
		longest = max(longest, p.X.Tick.Label.Width(c))
	}
	// The colour bar: a plot of its own, one column of the scale.
	bar := plot.New()
	bar.HideX()
	bar.Y.Label.Text = h.ScaleLabel
	bar.Y.Min, bar.Y.Max = h.Min, h.Max
	bar.Add(colorScale{cmap: cmap, min: h.Min, max: h.Max})
	const barWidth = 95
	width := vg.Points(max(400, 90+40*float64(len(h.Cols))+barWidth))
	// The title is centred over the plot beside the bar: wide enough for it.
	width = max(width, p.Title.TextStyle.Width(h.Title)+vg.Points(barWidth+30))
	height := vg.Points(max(220, 110+22*float64(len(h.Rows)))) + longest*0.75
	return render(path, width, height, func(dc draw.Canvas) {
		p.Draw(draw.Crop(dc, 0, -vg.Points(barWidth+10), 0, 0))
		bar.Draw(draw.Crop(dc, dc.Size().X-vg.Points(barWidth), 0, longest*0.75+vg.Points(30), -vg.Points(30)))
	})
}

// Strip is one column of dots per group: every run of a cell, so that a
// reader sees the spread (and any second mode) the median hides.
type Strip struct {
	Title, XLabel, YLabel string
	Groups                []string
	Values                [][]float64 // [group][run]
}

// StripChart draws s to path; the Y axis is logarithmic when every value
// is positive and they span more than a factor of 20.
func StripChart(s Strip, path string) error {
	if len(s.Groups) == 0 {
		return fmt.Errorf("%s: no cells to draw", path)
	}
	p := newPlot(s.Title)
	p.Y.Label.Text, p.X.Label.Text = s.YLabel, s.XLabel
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, vs := range s.Values {
		for _, v := range vs {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if lo > 0 && hi/lo > 20 {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = lo/1.5, hi*1.5 // no dot on an axis
	} else {
		p.Y.Min = 0
	}
	for g, vs := range s.Values {
		var xy plotter.XYs
		for i, v := range vs {
			// A deterministic spread across the column: dots side by side.
			x := float64(g) + 0.3*(float64(i%11)/10-0.5)
			xy = append(xy, plotter.XY{X: x, Y: v})
		}
		if len(xy) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = vmColor(g)
		sc.GlyphStyle.Radius = vg.Points(2)
		p.Add(sc)
	}
	p.NominalX(s.Groups...)
	p.X.Min, p.X.Max = -0.6, float64(len(s.Groups))-0.4
	width := vg.Points(max(480, 90*float64(len(s.Groups))))
	return render(path, width, vg.Points(320), func(dc draw.Canvas) { p.Draw(dc) })
}
