package sim

import (
	"fmt"
	"math/rand" // v1 on purpose: its seeded sequence is the published simulator's
	"slices"
	"strings"
)

// Order returns the order in which the replay tries the tasks, as the
// published simulator built it from a seed (REPLAY.md, "Order and load"),
// and the rank of each of the cluster's nodes (in name order) that breaks
// ties between nodes of equal score:
//
//  1. sort the tasks by name and shuffle them;
//  2. while the total GPU demand is below tune × capacity (milli-GPU),
//     append a copy of a randomly chosen original task (named
//     "<name>-tuned-<i>"); stop before the copy that would pass the
//     target. Above the target, remove random tasks instead until it is
//     reached. tune ≤ 0 leaves the shuffled list as it is.
//
// The random numbers come from math/rand's seeded source in the order the
// published simulator draws them (one number before the shuffle, then the
// shuffle, then one per copy), so a seed gives the same task order as in
// the study. As there, the stop test of step 2 adds the copy's per-GPU
// milli rather than its total (it differs only when the last copy drawn
// asks for several GPUs).
//
// The study's simulator then names each node after a random permutation
// drawn from the same source ("0042-openb-node-0007") and its scheduler,
// among nodes of equal score, takes the one whose name sorts first: a
// fixed random priority over the nodes for the whole run, not a fresh
// draw per task. rank is that permutation.
func Order(tasks []Task, nodes int, seed int64, tune float64, capacity int) (order []Task, rank []int) {
	byName := slices.Clone(tasks)
	slices.SortStableFunc(byName, func(a, b Task) int { return strings.Compare(a.Name, b.Name) })
	r := rand.New(rand.NewSource(seed))
	_ = r.Int() // the study's simulator logs one random number after seeding
	out := slices.Clone(byName)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if tune > 0 && len(byName) > 0 {
		out = tuneTo(out, byName, r, tune*float64(capacity))
	}
	return out, r.Perm(nodes)
}

// tuneTo appends random copies of tasks in byName to out, or removes
// random tasks from it, until the GPU demand reaches target.
func tuneTo(out, byName []Task, r *rand.Rand, target float64) []Task {
	total := 0
	for i := range out {
		total += out[i].GPUMilli()
	}
	switch {
	case float64(total) < target:
		for i := 0; ; i++ {
			t := byName[r.Intn(len(byName))]
			if float64(total+t.Milli) > target {
				break
			}
			total += t.GPUMilli()
			t.Name = fmt.Sprintf("%s-tuned-%d", t.Name, i)
			out = append(out, t)
		}
	case float64(total) > target:
		for float64(total) > target && len(out) > 0 {
			i := r.Intn(len(out))
			total -= out[i].GPUMilli()
			out = slices.Delete(out, i, i+1)
		}
	}
	return out
}
