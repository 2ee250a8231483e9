package sim

import (
	"slices"
	"testing"
)

func TestUpperBound(t *testing.T) {
	share := func(m int) Task { return Task{GPUs: 1, Milli: m} }
	whole := Task{GPUs: 1, Milli: 1000}
	tests := []struct {
		name  string
		gpus  int
		tasks []Task
		used  []int64 // the bound on used milli after each task
	}{
		{"two 810s on one GPU: one fails", 1, []Task{share(810), share(810)}, []int64{810, 810}},
		{"a 160 fills beside an 810", 1, []Task{share(810), share(160), share(810)}, []int64{810, 970, 970}},
		{"room for all: no bound below arrived", 3, []Task{share(810), share(810), whole}, []int64{810, 1620, 2620}},
		{"the best is to fail one 810 for the whole GPU", 2, []Task{share(810), share(810), whole}, []int64{810, 1620, 1810}},
		{"small shares alone: only capacity binds", 1, []Task{share(470), share(470), share(470)}, []int64{470, 940, 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pts := boundPoints(tt.tasks, tt.gpus)
			for i, p := range pts {
				if p.Used != tt.used[i] {
					t.Errorf("after task %d: bound %d milli used, want %d", i, p.Used, tt.used[i])
				}
			}
		})
	}
}

func TestParseBudgets(t *testing.T) {
	tests := []struct {
		in   string
		want []float64
		bad  bool
	}{
		{in: "", want: []float64{0}},
		{in: "5", want: []float64{0, 5}},
		{in: "10, 1,2%,5,5", want: []float64{0, 1, 2, 5, 10}},
		{in: "0.5", want: []float64{0, 0.5}},
		{in: "abc", bad: true},
		{in: "-1", bad: true},
		{in: "101", bad: true},
		{in: "NaN", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseBudgets(tt.in)
		if (err != nil) != tt.bad || !tt.bad && !slices.Equal(got, tt.want) {
			t.Errorf("ParseBudgets(%q) = %v, %v; want %v (error: %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func FuzzParseBudgets(f *testing.F) {
	for _, s := range []string{"", "5", "1,2,5,10", "10, 1,2%,5,5", "0.5", "abc", "-1", "1e2", "NaN", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseBudgets(s)
		if err != nil {
			return
		}
		if len(got) == 0 || got[0] != 0 || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("ParseBudgets(%q) = %v: want 0 first, sorted, no repeats", s, got)
		}
		for _, b := range got {
			if !(b >= 0 && b <= 100) {
				t.Fatalf("ParseBudgets(%q) = %v: %v outside 0..100", s, got, b)
			}
		}
	})
}
