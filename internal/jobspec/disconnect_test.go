package jobspec

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestDisconnectParses: the disconnect block reads from YAML with its
// duration, replace defaults to true when left out, and a group without
// the block keeps none (its defaults depend on the node's heartbeat TTL).
func TestDisconnectParses(t *testing.T) {
	cases := []struct {
		name      string
		add       string
		want      *api.Disconnect
		stopAfter time.Duration
		replace   bool
	}{
		{"absent", "", nil, 0, true},
		{"stop_after only", "    disconnect: {stop_after: 3s}\n", &api.Disconnect{StopAfter: api.Duration(3 * time.Second)}, 3 * time.Second, true},
		{"replace false", "    disconnect: {replace: false}\n", &api.Disconnect{}, 0, false},
		{"both", "    disconnect:\n      stop_after: 5m\n      replace: false\n", &api.Disconnect{StopAfter: api.Duration(5 * time.Minute)}, 5 * time.Minute, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job, err := Parse("t.yaml", []byte(edit(c.add)))
			if err != nil {
				t.Fatal(err)
			}
			got := job.Groups[0].Disconnect
			switch {
			case c.want == nil && got != nil:
				t.Fatalf("disconnect = %+v, want none", got)
			case c.want != nil && (got == nil || got.StopAfter != c.want.StopAfter || got.Replace == nil || *got.Replace != c.replace):
				t.Fatalf("disconnect = %+v, want stop_after %s and replace %v spelled out", got, c.want.StopAfter, c.replace)
			}
			p := api.DisconnectFor(job.Type, job.Groups[0], 15*time.Second)
			if p.StopAfter != c.stopAfter || p.Replace != c.replace {
				t.Fatalf("policy = %+v, want stop_after %s replace %v", p, c.stopAfter, c.replace)
			}
		})
	}
}
