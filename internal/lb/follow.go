package lb

import (
	"context"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/discovery"
)

// Follow keeps m in line with the servers' service catalog until ctx
// ends, with blocking queries on /v1/service-catalog through c (which
// moves to the next server when one does not answer).
func Follow(ctx context.Context, c *apiclient.Client, m *Manager, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hash := ""
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		cat, err := c.ServiceCatalog(ctx, hash, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("cannot read the service catalog; retrying", "server", c.Address(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		if cat.Hash != hash {
			hash = cat.Hash
			m.Update(discovery.FromWire(cat))
		}
	}
}
