package state

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUnavailable: etcd's own ways of saying it cannot answer now are
// unavailability (a caller may retry); the store's content errors are not.
func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"etcd has no leader", fmt.Errorf("apply plan: %w", rpctypes.ErrNoLeader), true},
		{"etcd unavailable", fmt.Errorf("apply plan: %w", status.Error(codes.Unavailable, "connection refused")), true},
		{"timeout", fmt.Errorf("apply plan: %w", context.DeadlineExceeded), true},
		{"conflict", fmt.Errorf("node n1: %w", ErrConflict), false},
		{"leadership moved", fmt.Errorf("apply: %w", ErrNotLeader), false},
		{"an error of unknown meaning", errors.New("disk on fire"), false},
		{"no error", nil, false},
	} {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("%s (%v): Unavailable %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
