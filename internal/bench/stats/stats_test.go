package stats

import (
	"math"
	"testing"
)

func TestQuantile(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q, want float64
	}{
		{0, 1}, {0.5, 5.5}, {0.9, 9.1}, {0.99, 9.91}, {1, 10}, {0.25, 3.25},
	} {
		if got := Quantile(sorted, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Quantile(1..10, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := Quantile([]float64{7}, 0.99); got != 7 {
		t.Errorf("one sample: %v, want 7", got)
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("no samples: want NaN")
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{5, 1, math.NaN(), 3, math.Inf(1), 2, 4})
	want := Summary{N: 5, Median: 3, Mean: 3, Min: 1, Max: 5, P50: 3, P90: 4.6, P99: 4.96}
	if math.Abs(s.P90-want.P90) > 1e-9 || math.Abs(s.P99-want.P99) > 1e-9 {
		t.Fatalf("percentiles %v, want %v", s, want)
	}
	s.P90, s.P99 = want.P90, want.P99
	if s != want {
		t.Fatalf("Summarize = %+v, want %+v", s, want)
	}
	if (Summarize(nil) != Summary{}) {
		t.Fatal("no samples: want the zero summary")
	}
}

func TestCompare(t *testing.T) {
	base := []float64{100, 101, 99, 102, 98, 100, 101, 99}
	for _, tc := range []struct {
		name        string
		new         []float64
		significant bool
		delta       float64
	}{
		// The same distribution shifted by noise only.
		{"noise", []float64{101, 99, 100, 98, 102, 100, 99, 101}, false, 0},
		// Every new sample above every old one: the U test's p is
		// 2/C(16,8) ≈ 0.00016.
		{"slower by 20%", []float64{120, 121, 119, 122, 118, 120, 121, 119}, true, 0.2},
		{"faster by half", []float64{50, 51, 49, 52, 48, 50, 51, 49}, true, -0.5},
	} {
		c := Compare(base, tc.new)
		if c.Significant != tc.significant {
			t.Errorf("%s: significant %v (p=%.4f), want %v", tc.name, c.Significant, c.P, tc.significant)
		}
		if math.Abs(c.Delta-tc.delta) > 1e-9 {
			t.Errorf("%s: delta %v, want %v", tc.name, c.Delta, tc.delta)
		}
	}
	// Disjoint samples of sizes 8 and 8: exact p = 2/12870.
	if c := Compare(base, []float64{200, 201, 202, 203, 204, 205, 206, 207}); math.Abs(c.P-2.0/12870) > 1e-6 {
		t.Errorf("p = %v, want %v", c.P, 2.0/12870)
	}
	// Two samples each cannot show a difference at 5%, however far apart.
	if c := Compare([]float64{1, 2}, []float64{100, 200}); c.Significant || c.Note == "" {
		t.Errorf("two samples each: %+v, want not significant with a note", c)
	}
	if c := Compare(nil, []float64{1}); c.Significant || c.Note == "" {
		t.Errorf("no old samples: %+v", c)
	}
}
