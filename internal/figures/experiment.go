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
	Title, YLabel string
	Groups        []string
	Series        []string
	Values        [][]float64
	// RefLine draws a dashed line at this value (e.g. 1: the reference);
	// 0: none.
	RefLine float64
}

// BarChart draws b to path (the format by its extension).
func BarChart(b Bars, path string) error {
	p := plot.New()
	p.Title.Text = b.Title
	p.Y.Label.Text = b.YLabel
	p.Y.Min = 0
	n := float64(len(b.Series))
	w := vg.Points(min(18, 300/math.Max(1, n*float64(len(b.Groups)))))
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
		p.Legend.Add(name, bars)
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
	p.Y.Max = top * 1.15 // room for the reference line and the legend
	p.Legend.Top = true
	p.NominalX(b.Groups...)
	return p.Save(vg.Points(max(480, 40+float64(len(b.Groups))*float64(w)*(n+1.5)/1)), vg.Points(300), path)
}

// Heat is a matrix of values drawn as coloured cells with their value in
// them; NaN cells are left blank.
type Heat struct {
	Title      string
	Rows, Cols []string
	Values     [][]float64 // [row][col]
	Min, Max   float64     // the colour scale
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

// Heatmap draws h to path: rows top to bottom, a diverging blue-red scale.
func Heatmap(h Heat, path string) error {
	p := plot.New()
	p.Title.Text = h.Title
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
	width := max(400, 90+40*float64(len(h.Cols)))
	height := max(220, 110+22*float64(len(h.Rows)))
	return p.Save(vg.Points(width), vg.Points(height), path)
}
