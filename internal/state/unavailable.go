package state

import (
	"context"
	"errors"
	"net"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Unavailable reports whether err says the store could not be reached or
// could not answer in time (no etcd leader, a timeout, a connection
// refused): a condition that passes, so the operation may be retried.
// Errors of the store's content (ErrConflict, ErrNotFound, ErrNotLeader)
// and of the caller's input are not unavailability.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, e := range []error{rpctypes.ErrNoLeader, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrLeaderChanged, rpctypes.ErrNotCapable, rpctypes.ErrTooManyRequests} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var code codes.Code
	var se interface{ GRPCStatus() *status.Status }
	var ee interface{ Code() codes.Code } // rpctypes.EtcdError
	switch {
	case errors.As(err, &se):
		code = se.GRPCStatus().Code()
	case errors.As(err, &ee):
		code = ee.Code()
	default:
		return false
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}
