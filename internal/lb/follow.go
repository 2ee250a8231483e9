package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/discovery"
)

// Follow keeps m in line with the servers' service catalog until ctx
// ends, with blocking queries on /v1/service-catalog, moving to the next
// server when one does not answer. client may be nil (plain HTTP).
func Follow(ctx context.Context, client *http.Client, servers []string, m *Manager, log *slog.Logger) {
	if client == nil {
		client = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hash, cur := "", 0
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		base := servers[cur%len(servers)]
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		c, err := fetchCatalog(ctx, client, strings.TrimRight(base, "/"), hash)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("cannot read the service catalog; retrying", "server", base, "err", err)
			cur++
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		if c.Hash != hash {
			hash = c.Hash
			m.Update(discovery.FromWire(c))
		}
	}
}

func fetchCatalog(ctx context.Context, client *http.Client, base, hash string) (*api.ServiceCatalog, error) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u := base + "/v1/service-catalog?wait=30s&hash=" + url.QueryEscape(hash)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	var c api.ServiceCatalog
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode the service catalog: %w", err)
	}
	return &c, nil
}
