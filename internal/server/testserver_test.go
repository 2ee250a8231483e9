package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/gantryhq/gantry/internal/state"
)

// startTestServer starts a real server with cfg (ID and address filled
// in) over its own embedded etcd, and stops it when the test ends.
func startTestServer(t *testing.T, cfg Config) *Server {
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
	ctx, cancel := context.WithCancel(context.Background())
	cli, err := state.Dial(ctx, []string{e.ClientURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.Open(ctx, cli, "/test/", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg.ID, cfg.HTTPAddr = "s1", "127.0.0.1:0"
	s := New(cfg, st, log)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}
