// Package stats owns the arithmetic of Gantry's benchmark reports: the
// summary of a figure's samples (median, extremes, percentiles) and the
// significance test that tells a change from noise (benchstat's method,
// through golang.org/x/perf/benchmath). It does no I/O and never reads
// the clock.
package stats

import (
	"math"
	"slices"

	"golang.org/x/perf/benchmath"
)

// Summary describes a set of samples.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
}

// Summarize returns the summary of samples; the zero Summary for none.
// NaN and infinite samples are left out.
func Summarize(samples []float64) Summary {
	s := finite(samples)
	if len(s) == 0 {
		return Summary{}
	}
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Summary{
		N:      len(s),
		Median: Quantile(s, 0.5),
		Mean:   sum / float64(len(s)),
		Min:    s[0],
		Max:    s[len(s)-1],
		P50:    Quantile(s, 0.5),
		P90:    Quantile(s, 0.9),
		P99:    Quantile(s, 0.99),
	}
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted samples by
// linear interpolation between the closest ranks (the definition of R's
// type 7 and NumPy's default); NaN for none.
func Quantile(sorted []float64, q float64) float64 {
	switch n := len(sorted); {
	case n == 0:
		return math.NaN()
	case n == 1 || q <= 0:
		return sorted[0]
	case q >= 1:
		return sorted[n-1]
	default:
		h := q * float64(n-1)
		lo := math.Floor(h)
		return sorted[int(lo)] + (h-lo)*(sorted[int(lo)+1]-sorted[int(lo)])
	}
}

func finite(samples []float64) []float64 {
	out := make([]float64, 0, len(samples))
	for _, v := range samples {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

// Alpha is the significance level below which a difference counts.
const Alpha = 0.05

// Comparison is the outcome of comparing an old and a new set of samples.
type Comparison struct {
	OldMedian float64 `json:"old_median"`
	NewMedian float64 `json:"new_median"`
	// Delta is the relative change of the medians (new/old - 1); NaN when
	// the old median is 0.
	Delta float64 `json:"delta"`
	// P is the Mann-Whitney U test's p-value that both sets come from one
	// distribution.
	P float64 `json:"p"`
	// Significant: P < Alpha, the change is beyond the noise.
	Significant bool `json:"significant"`
	// Note says why a difference could not be shown (too few samples).
	Note string `json:"note,omitempty"`
	// N1 and N2 are the numbers of old and new values tested.
	N1 int `json:"n_old"`
	N2 int `json:"n_new"`
}

// Compare tests old against new as benchstat does: medians, and the
// Mann-Whitney U test (no assumption about the distribution) at Alpha.
func Compare(old, new []float64) Comparison {
	o, n := finite(old), finite(new)
	c := Comparison{Delta: math.NaN(), P: 1, N1: len(o), N2: len(n)}
	if len(o) == 0 || len(n) == 0 {
		c.Note = "no samples on one side"
		return c
	}
	th := benchmath.DefaultThresholds
	th.CompareAlpha = Alpha
	so, sn := benchmath.NewSample(o, &th), benchmath.NewSample(n, &th)
	c.OldMedian = benchmath.AssumeNothing.Summary(so, 0.95).Center
	c.NewMedian = benchmath.AssumeNothing.Summary(sn, 0.95).Center
	if c.OldMedian != 0 {
		c.Delta = c.NewMedian/c.OldMedian - 1
	}
	cmp := benchmath.AssumeNothing.Compare(so, sn)
	c.P = cmp.P
	c.Significant = cmp.P < cmp.Alpha
	if len(cmp.Warnings) > 0 {
		c.Note = cmp.Warnings[0].Error()
	}
	return c
}
