package sim

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

var plotColors = []string{"#7f7f7f", "#1f77b4", "#ff7f0e", "#9467bd", "#2ca02c", "#d62728", "#000000", "#8c564b"}

// Plot draws an SVG of the mean GPU allocation (%) against arrived GPU
// demand (% of capacity), one line per policy.
func Plot(w io.Writer, title string, runs []RunSummary) error {
	const (
		width, height          = 760.0, 480.0
		left, right, top, bott = 60.0, 170.0, 40.0, 50.0
		xMax, yMin, yMax       = float64(MaxPercent), 0.0, 100.0
	)
	pw, ph := width-left-right, height-top-bott
	x := func(v float64) float64 { return left + v/xMax*pw }
	y := func(v float64) float64 { return top + (1-(v-yMin)/(yMax-yMin))*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15">GPU allocation vs arrived GPU demand: %s</text>`+"\n", left, html.EscapeString(title))
	for v := 0.0; v <= xMax; v += 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x(v), y(yMin), x(v), y(yMax))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x(v), y(yMin)+16, v)
	}
	for v := yMin; v <= yMax; v += 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x(0), y(v), x(xMax), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.0f</text>`+"\n", x(0)-6, y(v)+4, v)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">arrived GPU demand (%% of capacity)</text>`+"\n", left+pw/2, height-12)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">GPU allocated (%%)</text>`+"\n", top+ph/2)
	for i, r := range runs {
		color := plotColors[i%len(plotColors)]
		var pts []string
		for p := 0; p <= MaxPercent; p++ {
			if v := r.mean[p]; !math.IsNaN(v) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(p)), y(v)))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		ly := top + 14 + float64(i)*18
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", width-right+12, ly-4, width-right+34, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s %.2f%%</text>`+"\n", width-right+40, ly, html.EscapeString(r.Label()), r.GPUAllocAt100.Mean)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
