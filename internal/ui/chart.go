package ui

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Point is one value of a series at a time; a NaN value leaves a gap.
type Point struct {
	T time.Time
	V float64
}

// Series is one line of a chart.
type Series struct {
	Name   string
	Points []Point
}

// Chart is a line chart of one quantity over time, drawn as SVG by the
// server: no chart code runs in the browser.
type Chart struct {
	ID     string // unique on the page; names the SVG's title and description
	Title  string
	Unit   string  // "%", "cores", "MiB" …
	Max    float64 // top of the y axis; 0: the largest value, rounded up
	Series []Series
}

const (
	chartW, chartH                  = 560, 180
	padL, padR, padT, padB          = 84, 12, 10, 24
	plotW, plotH                    = chartW - padL - padR, chartH - padT - padB
	chartFont                       = 11
	chartTextColour, chartGridColor = "#1b1f24", "#d0d7de"
)

// niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// formatValue prints a value with at most 3 significant digits.
func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
}

// display prints a value with the chart's unit: in millicores on a CPU
// chart whose axis stays under one core.
func (c *Chart) display(v float64) string {
	if c.Unit == "cores" && c.top() < 1 {
		return formatValue(v*1000) + " millicores"
	}
	return strings.TrimSpace(formatValue(v) + " " + c.Unit)
}

// axisLabels names the y axis at 0, half and top. Below one core a CPU
// axis counts millicores; otherwise values get as many decimals as it
// takes to tell the three apart.
func axisLabels(top float64, unit string) [3]string {
	if unit == "cores" && top < 1 {
		top, unit = top*1000, "millicores"
	}
	vals := [3]float64{0, top / 2, top}
	var out [3]string
	for dec := 0; dec <= 6; dec++ {
		for i, v := range vals {
			out[i] = strings.TrimSpace(strconv.FormatFloat(v, 'f', dec, 64) + " " + unit)
		}
		if out[0] != out[1] && out[1] != out[2] && math.Abs(mustParse(out[1])-vals[1]) <= vals[1]/100 {
			return out
		}
	}
	return out
}

func mustParse(label string) float64 {
	f, _ := strconv.ParseFloat(strings.Fields(label)[0], 64)
	return f
}

// span returns the first and last time of every series.
func (c *Chart) span() (time.Time, time.Time, bool) {
	var lo, hi time.Time
	ok := false
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !ok || p.T.Before(lo) {
				lo = p.T
			}
			if !ok || p.T.After(hi) {
				hi = p.T
			}
			ok = true
		}
	}
	return lo, hi, ok
}

func (c *Chart) top() float64 {
	if c.Max > 0 {
		return c.Max
	}
	m := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !math.IsNaN(p.V) && p.V > m {
				m = p.V
			}
		}
	}
	return niceMax(m)
}

// latest is a series' last value that is not NaN.
func latest(s Series) (float64, bool) {
	for i := len(s.Points) - 1; i >= 0; i-- {
		if !math.IsNaN(s.Points[i].V) {
			return s.Points[i].V, true
		}
	}
	return 0, false
}

// Summary says in words what the chart shows, for its accessible name and
// the legend: every series with its latest and highest value.
func (c *Chart) Summary() string {
	var parts []string
	for _, s := range c.Series {
		v, ok := latest(s)
		if !ok {
			continue
		}
		hi := math.Inf(-1)
		for _, p := range s.Points {
			if !math.IsNaN(p.V) {
				hi = math.Max(hi, p.V)
			}
		}
		parts = append(parts, fmt.Sprintf("%s now %s, highest %s", s.Name, c.display(v), c.display(hi)))
	}
	if len(parts) == 0 {
		return c.Title + ": no samples yet"
	}
	return c.Title + ": " + strings.Join(parts, "; ")
}

// SVG draws the chart.
func (c *Chart) SVG() template.HTML {
	var b strings.Builder
	id := html.EscapeString(c.ID)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t" data-chart="%s" font-size="%d" font-family="system-ui, sans-serif">`,
		chartW, chartH, chartW, chartH, id, id, chartFont)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title>`, id, html.EscapeString(c.Summary()))
	lo, hi, ok := c.span()
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" stroke="%s"/>`, padL, padT, plotW, plotH, chartGridColor)
	top := c.top()
	labels := axisLabels(top, c.Unit)
	for i := 0; i <= 4; i++ {
		y := float64(padT) + float64(plotH)*float64(4-i)/4
		if i > 0 && i < 4 {
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>`, padL, padL+plotW, y, y, chartGridColor)
		}
		if i%2 == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%s</text>`, padL-4, y+4, chartTextColour, html.EscapeString(labels[i/2]))
		}
	}
	if !ok {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">no samples yet</text></svg>`, padL+plotW/2, padT+plotH/2, chartTextColour)
		return template.HTML(b.String())
	}
	dur := hi.Sub(lo)
	x := func(t time.Time) float64 {
		if dur <= 0 {
			return float64(padL + plotW)
		}
		return float64(padL) + float64(plotW)*float64(t.Sub(lo))/float64(dur)
	}
	y := func(v float64) float64 {
		v = math.Max(0, math.Min(v, top))
		return float64(padT) + float64(plotH)*(1-v/top)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`, padL, chartH-6, chartTextColour, lo.UTC().Format("15:04:05"))
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="%s">%s UTC</text>`, padL+plotW, chartH-6, chartTextColour, hi.UTC().Format("15:04:05"))
	for i, s := range c.Series {
		pts := append([]Point(nil), s.Points...)
		sort.SliceStable(pts, func(a, b int) bool { return pts[a].T.Before(pts[b].T) })
		var d strings.Builder
		pen := false
		for _, p := range pts {
			if math.IsNaN(p.V) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, x(p.T), y(p.V))
			pen = true
		}
		colour := SeriesColours[i%len(SeriesColours)]
		if d.Len() > 0 {
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" data-series="%s"/>`, strings.TrimSpace(d.String()), colour, html.EscapeString(s.Name))
		}
		if len(pts) == 1 && !math.IsNaN(pts[0].V) {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, x(pts[0].T), y(pts[0].V), colour)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// LegendItem is one series' name, colour and latest value.
type LegendItem struct {
	Name, Colour, Latest string
}

// Legend lists the series with their colours and latest values.
func (c *Chart) Legend() []LegendItem {
	out := make([]LegendItem, 0, len(c.Series))
	for i, s := range c.Series {
		item := LegendItem{Name: s.Name, Colour: SeriesColours[i%len(SeriesColours)], Latest: "–"}
		if v, ok := latest(s); ok {
			item.Latest = c.display(v)
		}
		out = append(out, item)
	}
	return out
}

// Swatch draws a legend's colour key.
func Swatch(colour string) template.HTML {
	return template.HTML(fmt.Sprintf(`<svg width="14" height="4" aria-hidden="true"><rect width="14" height="4" fill="%s"/></svg>`, html.EscapeString(colour)))
}
