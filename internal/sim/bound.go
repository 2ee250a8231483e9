package sim

import "slices"

// UpperBound is a ceiling on the GPU allocation curve that no policy can
// pass on a task order, with or without moving work, computed from the
// order alone. It rests on one fact of the trace: a share of s milli with
// s above 500 sits alone among such shares on its GPU, and the
// 1000−s milli left beside it can only be used by shares of at most
// 1000−s. After each task, for each share size s above 500 (N tasks of
// it so far, S milli of tasks that could fill beside it, D milli of
// capacity not yet asked for), the failed demand is at least
//
//	min over x placed of max((1000−s)·x − S − D, s·(N−x))
//
// (placed: each leaves a sliver only small tasks fill; failed: each
// fails its own milli), and the allocation is at most what arrived less
// the largest of these. On the default list the 810-milli shares bind:
// about 97.5% at 100% arrived.
func UpperBound(tasks []Task, gpus int) Curve {
	return Reduce(boundPoints(tasks, gpus), gpus, Allocation(gpus))
}

func boundPoints(tasks []Task, gpus int) []Point {
	capacity := int64(gpus) * 1000
	var sizes []int
	for i := range tasks {
		if t := &tasks[i]; t.GPUs == 1 && t.Milli > 500 && t.Milli < 1000 && !slices.Contains(sizes, t.Milli) {
			sizes = append(sizes, t.Milli)
		}
	}
	slices.Sort(sizes)
	count := make([]int64, len(sizes)) // N per size
	fill := make([]int64, len(sizes))  // S per size
	points := make([]Point, 0, len(tasks))
	var arrived int64
	for i := range tasks {
		t := &tasks[i]
		arrived += int64(t.GPUMilli())
		if t.GPUs == 1 && t.Milli < 1000 {
			for k, s := range sizes {
				if t.Milli == s {
					count[k]++
				}
				if t.Milli <= 1000-s {
					fill[k] += int64(t.Milli)
				}
			}
		}
		failed := max(0, arrived-capacity)
		for k, s := range sizes {
			failed = max(failed, minFailed(int64(s), count[k], fill[k], capacity-arrived))
		}
		points = append(points, Point{Arrived: arrived, Used: arrived - failed})
	}
	return points
}

// minFailed is min over x in [0, n] of max((1000−s)·x − fill − d,
// s·(n−x)), in milli-GPU, rounded down (x may be fractional: the bound
// only gets weaker).
func minFailed(s, n, fill, d int64) int64 {
	r := 1000 - s
	placedAll := r*n - fill - d // x = n
	if placedAll <= 0 {
		return 0
	}
	// The two lines cross at x* = (s·n + fill + d)/1000.
	if s*n+fill+d <= 0 { // x* ≤ 0: fail them all
		return max(s*n, -fill-d)
	}
	return s * placedAll / 1000
}
