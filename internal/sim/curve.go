package sim

import (
	"math"
	"strconv"
)

// MaxPercent is the last whole percent of arrived demand the curves keep.
const MaxPercent = 130

// Curve is one value per whole percent of arrived GPU demand, 0 to
// MaxPercent; NaN where no task arrived near that percent.
type Curve [MaxPercent + 1]float64

// round2 rounds to two decimals as Python's round(x, 2) does (the exact
// binary value, ties to even), which the study's analysis scripts use.
func round2(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 2, 64), 64)
	return v
}

// Reduce applies the study's whole-percent bucket rule: a task's arrived
// demand in percent of capacity, rounded to a whole percent (ties to
// even); the value at p is the mean of the per-task values (each rounded
// to two decimals) of the tasks whose arrived percent is p, or, when there
// is none, of those within p ± 1; the mean is rounded to two decimals.
func Reduce(points []Point, gpus int, value func(Point) float64) Curve {
	var sum [MaxPercent + 1]float64
	var cnt [MaxPercent + 1]int
	pct := make([]int, len(points))
	vals := make([]float64, len(points))
	for i, p := range points {
		a := math.RoundToEven(float64(p.Arrived) / float64(gpus) / 10)
		pct[i] = -1
		if a >= 0 && a <= MaxPercent+1 {
			pct[i] = int(a)
		}
		vals[i] = round2(value(p))
		if a >= 0 && a <= MaxPercent {
			sum[int(a)] += vals[i]
			cnt[int(a)]++
		}
	}
	var c Curve
	for p := 0; p <= MaxPercent; p++ {
		if cnt[p] > 0 {
			c[p] = round2(sum[p] / float64(cnt[p]))
			continue
		}
		s, n := 0.0, 0
		for i, a := range pct {
			if a >= p-1 && a <= p+1 && a >= 0 {
				s += vals[i]
				n++
			}
		}
		if n == 0 {
			c[p] = math.NaN()
		} else {
			c[p] = round2(s / float64(n))
		}
	}
	return c
}

// Allocation is the GPU allocation ratio in percent of capacity.
func Allocation(gpus int) func(Point) float64 {
	return func(p Point) float64 { return float64(p.Used) / float64(gpus) / 10 }
}

// FragRate is the share of idle GPU that is fragment, in percent.
func FragRate(p Point) float64 {
	if p.Idle <= 0 {
		return 0
	}
	return 100 * p.Frag / float64(p.Idle)
}

// At returns the curve's value at percent p (NaN outside the range).
func (c *Curve) At(p int) float64 {
	if p < 0 || p > MaxPercent {
		return math.NaN()
	}
	return c[p]
}
