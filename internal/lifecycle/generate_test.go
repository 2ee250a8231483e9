package lifecycle

import (
	"bytes"
	"os"
	"testing"
)

// TestModelTransitionsUpToDate fails when the checked-in Promela
// transitions differ from what the table generates: the model would be
// checking a state machine the code no longer runs.
func TestModelTransitionsUpToDate(t *testing.T) {
	got, err := os.ReadFile("model/transitions.pml")
	if err != nil {
		t.Fatal(err)
	}
	if want := Promela(); !bytes.Equal(got, want) {
		t.Fatalf("model/transitions.pml is stale: run go generate ./internal/lifecycle/... and commit the result\n--- want\n%s", want)
	}
}

func TestCodes(t *testing.T) {
	seen := map[int]State{}
	for _, s := range append([]State{None}, States...) {
		c := Code(s)
		if c < 0 {
			t.Fatalf("state %s has no code", s)
		}
		if o, dup := seen[c]; dup {
			t.Fatalf("states %s and %s share code %d", s, o, c)
		}
		seen[c] = s
	}
	if Code(State{Desired: "run", Client: "bogus"}) != -1 {
		t.Fatal("an unknown status must have no code")
	}
}
