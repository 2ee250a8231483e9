// Package statetest owns the test fixture of the packages above the
// store: a real embedded etcd on free loopback ports, with a store opened
// on it, both stopped when the test ends. It must never be imported by
// code outside tests.
package statetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/gantryhq/gantry/internal/state"
)

// Open starts an embedded etcd member in a temporary directory and opens
// a store under prefix on it.
func Open(t testing.TB, prefix string) *state.Store {
	t.Helper()
	e, err := state.StartEmbedded(state.EmbedConfig{
		DataDir:   t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx := context.Background()
	cli, err := state.Dial(ctx, []string{e.ClientURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st, err := state.Open(ctx, cli, prefix, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
