package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// Published holds curves from the study's result files
// (fgd-expected-results/analysis_allo_discrete.csv): by workload ("openb_pod_list_default"), then by
// policy label ("06-FGD"), then by seed.
type Published map[string]map[string]map[int64]Curve

// ParsePublished reads a result file in the study's layout:
// workload,sc_policy,tune,seed[,total_gpus],0,1,…,130.
func ParsePublished(r io.Reader) (Published, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: published results: %v", ErrTrace, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	for _, c := range []string{"workload", "sc_policy", "seed", "0", strconv.Itoa(MaxPercent)} {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("%w: published results: header lacks %q", ErrTrace, c)
		}
	}
	out := Published{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: published results: %v", ErrTrace, err)
		}
		get := func(c string) string {
			if i := col[c]; i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		seed, err := strconv.ParseInt(get("seed"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: published results line %d: seed %q", ErrTrace, line, get("seed"))
		}
		var c Curve
		for p := 0; p <= MaxPercent; p++ {
			c[p] = math.NaN()
			if s := get(strconv.Itoa(p)); s != "" {
				if c[p], err = strconv.ParseFloat(s, 64); err != nil {
					return nil, fmt.Errorf("%w: published results line %d: column %d: %q", ErrTrace, line, p, s)
				}
			}
		}
		w, pol := get("workload"), get("sc_policy")
		if out[w] == nil {
			out[w] = map[string]map[int64]Curve{}
		}
		if out[w][pol] == nil {
			out[w][pol] = map[int64]Curve{}
		}
		out[w][pol][seed] = c
	}
}

// LoadPublished reads a result file.
func LoadPublished(path string) (Published, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := ParsePublished(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Mean is the mean curve over the given seeds that the published results
// have (NaN where none has a value), and the seeds it used.
func (pub Published) Mean(workload, label string, seeds []int64) (Curve, []int64) {
	var c Curve
	runs := pub[workload][label]
	var used []int64
	for _, s := range seeds {
		if _, ok := runs[s]; ok {
			used = append(used, s)
		}
	}
	for p := 0; p <= MaxPercent; p++ {
		sum, n := 0.0, 0
		for _, s := range used {
			if v := runs[s][p]; !math.IsNaN(v) {
				sum += v
				n++
			}
		}
		c[p] = math.NaN()
		if n > 0 {
			c[p] = sum / float64(n)
		}
	}
	return c, used
}

// Tolerances of the fidelity check, in percentage points.
const (
	TolAt100  = 1.0 // mean allocation at 100% arrived
	TolCurve  = 2.0 // mean curve at every whole percent from CurveFrom to MaxPercent
	CurveFrom = 50
)

// Fidelity compares a policy's mean allocation curve on one workload with
// the published one over the same seeds.
type Fidelity struct {
	Workload  string  `json:"workload"`
	Policy    string  `json:"policy"`
	Seeds     []int64 `json:"seeds"`
	Ours      float64 `json:"ours_at_100"`      // mean allocation at 100% arrived
	Published float64 `json:"published_at_100"` // the same, published
	WorstGap  float64 `json:"worst_gap"`        // largest |ours − published| from CurveFrom to MaxPercent
	WorstAt   int     `json:"worst_at"`         // where
	OK        bool    `json:"ok"`
}

// Compare checks our mean curve against the published mean over the seeds
// both have. ok is false when the published results have none of them.
func Compare(pub Published, workload, pol string, seeds []int64, ours Curve) (Fidelity, bool) {
	label := policy.Label(pol)
	theirs, used := pub.Mean(workload, label, seeds)
	if len(used) == 0 {
		return Fidelity{}, false
	}
	f := Fidelity{Workload: workload, Policy: pol, Seeds: used, Ours: ours[100], Published: theirs[100]}
	for p := CurveFrom; p <= MaxPercent; p++ {
		gap := math.Abs(ours[p] - theirs[p])
		if math.IsNaN(ours[p]) != math.IsNaN(theirs[p]) {
			gap = 100 // a value on one side only
		}
		if gap > f.WorstGap {
			f.WorstGap, f.WorstAt = gap, p
		}
	}
	f.OK = math.Abs(f.Ours-f.Published) <= TolAt100 && f.WorstGap <= TolCurve
	return f, true
}

// MeanCurve averages curves point by point (NaN where none has a value).
func MeanCurve(cs []Curve) Curve {
	var out Curve
	for p := 0; p <= MaxPercent; p++ {
		sum, n := 0.0, 0
		for i := range cs {
			if v := cs[i][p]; !math.IsNaN(v) {
				sum += v
				n++
			}
		}
		out[p] = math.NaN()
		if n > 0 {
			out[p] = sum / float64(n)
		}
	}
	return out
}
