package ui

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Colour names of the palette; the stylesheet reads them as CSS custom
// properties (--bg, --text, …) that PaletteCSS declares.
var Palette = map[string]string{
	"bg":          "#ffffff",
	"surface":     "#f4f6f8",
	"text":        "#1b1f24",
	"muted":       "#545d68",
	"border":      "#c9d1d9",
	"link":        "#0a53be",
	"focus":       "#0a53be",
	"header-bg":   "#1f2937",
	"header-text": "#ffffff",
	"header-link": "#e5e7eb",

	"ok-bg":      "#d1e7dd",
	"ok-text":    "#0f5132",
	"warn-bg":    "#fff3cd",
	"warn-text":  "#5c4502",
	"bad-bg":     "#f8d7da",
	"bad-text":   "#842029",
	"info-bg":    "#cfe2ff",
	"info-text":  "#084298",
	"plain-bg":   "#e2e3e5",
	"plain-text": "#373b3e",

	"bar-track": "#e9ecef",
	"bar-fill":  "#0a53be",
	"bar-over":  "#b42318",
	"bad-line":  "#b42318",

	"slice-free": "#ffffff",
	"slice-grid": "#8c959f",
}

// SeriesColours draw chart lines, in order; each keeps a 3:1 contrast
// against the background (WCAG's minimum for graphics).
var SeriesColours = []string{"#0a53be", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490"}

// JobColours fill the pieces of the GPU map, one per job (by a hash of
// its key); their labels are drawn in the text colour.
var JobColours = []string{"#cfe2ff", "#d1e7dd", "#fff3cd", "#e2d9f3", "#ffe5d0", "#d2f4ea", "#f7d6e6", "#dde3ea"}

// ContrastPair is a foreground colour drawn on a background colour
// somewhere in the UI.
type ContrastPair struct {
	Where  string
	FG, BG string
}

// TextPairs lists every text/background pair the stylesheet and the
// drawings use; each must reach 4.5:1.
func TextPairs() []ContrastPair {
	p := Palette
	pairs := []ContrastPair{
		{"body text", p["text"], p["bg"]},
		{"body text on panels", p["text"], p["surface"]},
		{"secondary text", p["muted"], p["bg"]},
		{"secondary text on panels", p["muted"], p["surface"]},
		{"links", p["link"], p["bg"]},
		{"links on panels", p["link"], p["surface"]},
		{"header", p["header-text"], p["header-bg"]},
		{"header links", p["header-link"], p["header-bg"]},
		{"status ok", p["ok-text"], p["ok-bg"]},
		{"status warning", p["warn-text"], p["warn-bg"]},
		{"status bad", p["bad-text"], p["bad-bg"]},
		{"status info", p["info-text"], p["info-bg"]},
		{"status plain", p["plain-text"], p["plain-bg"]},
		{"free GPU slice label", p["muted"], p["slice-free"]},
		{"unhealthy GPU label", p["bad-text"], p["bad-bg"]},
		{"bar labels", p["text"], p["bar-track"]},
		{"GPU title on its panel", p["text"], p["surface"]},
		{"healthy GPU label", p["ok-text"], p["surface"]},
		{"MIG slice numbers", p["muted"], p["surface"]},
	}
	for _, c := range JobColours {
		pairs = append(pairs, ContrastPair{"GPU map piece label on " + c, p["text"], c})
		pairs = append(pairs, ContrastPair{"GPU map link on " + c, p["link"], c})
	}
	return pairs
}

// GraphicPairs lists the non-text colours that must stand out (3:1)
// from the background they are drawn on: chart lines, bars, focus rings.
func GraphicPairs() []ContrastPair {
	p := Palette
	pairs := []ContrastPair{
		{"focus ring", p["focus"], p["bg"]},
		{"focus ring on panels", p["focus"], p["surface"]},
		{"usage bar", p["bar-fill"], p["bar-track"]},
		{"usage bar over guarantee", p["bar-over"], p["bar-track"]},
		{"unhealthy GPU outline", p["bad-line"], p["bg"]},
		{"MIG slice grid", p["slice-grid"], p["bg"]},
	}
	for _, c := range SeriesColours {
		pairs = append(pairs, ContrastPair{"chart line " + c, c, p["bg"]})
	}
	return pairs
}

// ContrastRatio is WCAG 2's contrast ratio of two "#rrggbb" colours,
// from 1 (same) to 21 (black on white).
func ContrastRatio(a, b string) (float64, error) {
	la, err := luminance(a)
	if err != nil {
		return 0, err
	}
	lb, err := luminance(b)
	if err != nil {
		return 0, err
	}
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05), nil
}

func luminance(hex string) (float64, error) {
	h := strings.TrimPrefix(hex, "#")
	if len(h) != 6 {
		return 0, fmt.Errorf("colour %q is not #rrggbb", hex)
	}
	var ch [3]float64
	for i := range ch {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return 0, fmt.Errorf("colour %q is not #rrggbb", hex)
		}
		c := float64(v) / 255
		if c <= 0.04045 {
			ch[i] = c / 12.92
		} else {
			ch[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*ch[0] + 0.7152*ch[1] + 0.0722*ch[2], nil
}

// PaletteCSS declares the palette as CSS custom properties.
func PaletteCSS() string {
	var b strings.Builder
	b.WriteString(":root{")
	for _, k := range sortedKeys(Palette) {
		fmt.Fprintf(&b, "--%s:%s;", k, Palette[k])
	}
	b.WriteString("}\n")
	return b.String()
}
