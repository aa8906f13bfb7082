package figures

import (
	"io"

	"fmt"
	"github.com/lhpvm/lhpvm/internal/atomicfile"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// margin is the blank border of every figure: gonum sets a plot's title
// and tick labels flush with its canvas's edges, and their glyphs reach a
// little beyond.
const margin = vg.Length(4)

// render draws a figure of w×h points into path (SVG, PNG, PDF, … by its
// extension): a white background over the whole canvas first, so the
// figure reads the same on a dark page, then paint, inside the margin. Every text it draws is
// measured with its font's metrics where it lands on the canvas; a text
// that does not lie wholly inside the canvas is an error, so a clipped
// label, legend or title cannot be written unnoticed.
func render(path string, w, h vg.Length, paint func(draw.Canvas)) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	var err error
	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		// The fonts go in: a viewer without Liberation would draw every
		// text in another font, wider than the metrics measured here.
		c = vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(true))
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(192))} // sharp on high-density screens
	default:
		if c, err = draw.NewFormattedCanvas(w, h, format); err != nil {
			return err
		}
	}
	mc := &measuringCanvas{Canvas: c, cur: identity}
	dc := draw.NewCanvas(mc, w, h)
	dc.FillPolygon(color.White, []vg.Point{{X: 0, Y: 0}, {X: w, Y: 0}, {X: w, Y: h}, {X: 0, Y: h}})
	paint(draw.Crop(dc, margin, -margin, margin, -margin))
	if out := mc.outside(w, h); len(out) > 0 {
		return fmt.Errorf("%s: text outside the %v×%v canvas: %s", path, w, h, strings.Join(out, "; "))
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := c.WriteTo(w)
		return err
	})
}

// newPlot is a plot with a title.
func newPlot(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	return p
}

// affine is x' = a x + b y + e, y' = c x + d y + f.
type affine struct{ a, b, c, d, e, f float64 }

var identity = affine{a: 1, d: 1}

func (m affine) apply(p vg.Point) (float64, float64) {
	x, y := float64(p.X), float64(p.Y)
	return m.a*x + m.b*y + m.e, m.c*x + m.d*y + m.f
}

// then is m followed, in local coordinates, by n (m ∘ n).
func (m affine) then(n affine) affine {
	return affine{
		a: m.a*n.a + m.b*n.c, b: m.a*n.b + m.b*n.d,
		c: m.c*n.a + m.d*n.c, d: m.c*n.b + m.d*n.d,
		e: m.a*n.e + m.b*n.f + m.e, f: m.c*n.e + m.d*n.f + m.f,
	}
}

// textBox is where one drawn text landed on the canvas.
type textBox struct {
	text                   string
	minX, minY, maxX, maxY float64
}

// measuringCanvas passes everything to its canvas and keeps the transform
// the texts are drawn under, to record each text's box on the canvas.
type measuringCanvas struct {
	vg.Canvas
	cur   affine
	stack []affine
	texts []textBox
}

func (m *measuringCanvas) Rotate(rad float64) {
	s, c := math.Sincos(rad)
	m.cur = m.cur.then(affine{a: c, b: -s, c: s, d: c})
	m.Canvas.Rotate(rad)
}

func (m *measuringCanvas) Translate(pt vg.Point) {
	m.cur = m.cur.then(affine{a: 1, d: 1, e: float64(pt.X), f: float64(pt.Y)})
	m.Canvas.Translate(pt)
}

func (m *measuringCanvas) Scale(x, y float64) {
	m.cur = m.cur.then(affine{a: x, d: y})
	m.Canvas.Scale(x, y)
}

func (m *measuringCanvas) Push() {
	m.stack = append(m.stack, m.cur)
	m.Canvas.Push()
}

func (m *measuringCanvas) Pop() {
	if n := len(m.stack); n > 0 {
		m.cur, m.stack = m.stack[n-1], m.stack[:n-1]
	}
	m.Canvas.Pop()
}

func (m *measuringCanvas) FillString(f font.Face, pt vg.Point, text string) {
	m.Canvas.FillString(f, pt, text)
	if f.Font.Size == 0 || text == "" {
		return
	}
	ext := f.Extents()
	w := f.Width(text)
	b := textBox{text: text, minX: math.Inf(1), minY: math.Inf(1), maxX: math.Inf(-1), maxY: math.Inf(-1)}
	for _, corner := range []vg.Point{{X: pt.X, Y: pt.Y - ext.Descent}, {X: pt.X + w, Y: pt.Y - ext.Descent},
		{X: pt.X, Y: pt.Y + ext.Ascent}, {X: pt.X + w, Y: pt.Y + ext.Ascent}} {
		x, y := m.cur.apply(corner)
		b.minX, b.maxX = math.Min(b.minX, x), math.Max(b.maxX, x)
		b.minY, b.maxY = math.Min(b.minY, y), math.Max(b.maxY, y)
	}
	m.texts = append(m.texts, b)
}

// outside lists the texts that do not lie wholly inside a w×h canvas.
func (m *measuringCanvas) outside(w, h vg.Length) []string {
	const slack = 0.5 // points: rounding in the font metrics
	var out []string
	for _, b := range m.texts {
		if b.minX < -slack || b.minY < -slack || b.maxX > float64(w)+slack || b.maxY > float64(h)+slack {
			out = append(out, fmt.Sprintf("%q at x %.1f..%.1f, y %.1f..%.1f", b.text, b.minX, b.maxX, b.minY, b.maxY))
		}
	}
	return out
}
