package ui

import "testing"

func TestPaletteContrast(t *testing.T) {
	for _, p := range TextPairs() {
		r, err := ContrastRatio(p.FG, p.BG)
		if err != nil {
			t.Fatal(err)
		}
		if r < 4.5 {
			t.Errorf("%s: %s on %s has contrast %.2f:1, want at least 4.5:1", p.Where, p.FG, p.BG, r)
		}
	}
	for _, p := range GraphicPairs() {
		r, err := ContrastRatio(p.FG, p.BG)
		if err != nil {
			t.Fatal(err)
		}
		if r < 3 {
			t.Errorf("%s: %s on %s has contrast %.2f:1, want at least 3:1", p.Where, p.FG, p.BG, r)
		}
	}
}

func TestContrastRatioKnownValues(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want float64
	}{{"#000000", "#ffffff", 21}, {"#ffffff", "#ffffff", 1}, {"#767676", "#ffffff", 4.54}} {
		got, err := ContrastRatio(c.a, c.b)
		if err != nil || got < c.want-0.01 || got > c.want+0.01 {
			t.Errorf("ContrastRatio(%s, %s) = %.3f, %v; want %.2f", c.a, c.b, got, err, c.want)
		}
	}
	if _, err := ContrastRatio("red", "#fff"); err == nil {
		t.Error("a colour name was accepted")
	}
}
