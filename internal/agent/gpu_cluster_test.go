//go:build cgo && linux

package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu/nvml"
	"github.com/gantryhq/gantry/internal/gpu/nvml/nvmltest"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/state/statetest"
)

func getJSON(t *testing.T, url string, v any) error {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func eventually(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if fn() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestGPUHealthReachesServer runs an embedded etcd, a server and an agent
// whose GPUs are go-nvml's mock DGX A100, injects an XID, and follows it
// to the node the scheduler reads and to the event stream; it reads both
// /metrics endpoints and the node's usage history on the way.
func TestGPUHealthReachesServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := statetest.Open(t, "/gpu-test/")
	ctx, cancel := context.WithCancel(context.Background())
	srv := server.New(server.Config{ID: "s1", HTTPAddr: "127.0.0.1:0", HeartbeatTTL: 3 * time.Second}, st, log)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()

	dgx := nvmltest.NewDGXA100()
	a, err := agent.New(agent.Config{
		Servers: []string{srv.Addr()}, DataDir: t.TempDir(), NodeName: "dgx-1", HTTPAddr: "127.0.0.1:0",
		GPU: agent.GPUConfig{Runtime: nvml.New(dgx.Server)}, SampleInterval: 100 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Wait()
	})

	var node api.Node
	eventually(t, "the node with 8 GPUs", func() bool {
		return getJSON(t, base+"/v1/nodes/"+a.NodeID(), &node) == nil && node.Status == api.NodeStatusReady && len(node.GPUs) == 8
	})
	if node.GPUs[6].Unhealthy {
		t.Fatalf("GPU 6 unhealthy at start: %s", node.GPUs[6].HealthReason)
	}

	// Follow node events from now on.
	var status api.StatusResponse
	if err := getJSON(t, base+"/v1/status", &status); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", fmt.Sprintf("%s/v1/events?topic=node&index=%d", base, status.Index), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	dgx.InjectXID(6, 79, -1)

	const reason = "XID 79: GPU has fallen off the bus"
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found := false
	for !found && sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		var n api.Node
		if ev.Topic != api.TopicNode || json.Unmarshal(ev.Payload, &n) != nil || len(n.GPUs) != 8 {
			continue
		}
		found = n.GPUs[6].Unhealthy && n.GPUs[6].HealthReason == reason
	}
	if !found {
		t.Fatalf("no node event with GPU 6 unhealthy (%v)", sc.Err())
	}
	eventually(t, "the server's view of the node with GPU 6 unhealthy", func() bool {
		return getJSON(t, base+"/v1/nodes/"+a.NodeID(), &node) == nil && node.GPUs[6].Unhealthy
	})
	if node.GPUs[5].Unhealthy {
		t.Errorf("GPU 5 unhealthy too: %s", node.GPUs[5].HealthReason)
	}

	// The agent's metrics: DCGM series of 8 GPUs, the XID and the reason.
	scrape := func(url string) map[string]int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		fams, err := metrics.ParseText(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for name, f := range fams {
			out[name] = len(f.Metric)
			for _, m := range f.Metric {
				lbl := map[string]string{}
				for _, l := range m.Label {
					lbl[l.GetName()] = l.GetValue()
				}
				v := m.GetGauge().GetValue()
				if name == metrics.DCGMXIDErrors && lbl["gpu"] == "6" && v == 79 {
					out["xid79"]++
				}
				if name == metrics.NodeGPUHealth && lbl["gpu"] == "6" && lbl["reason"] == reason {
					out["reason"]++
				}
			}
		}
		return out
	}
	eventually(t, "the XID in the agent's metrics", func() bool { return scrape("http://" + node.HTTPAddr + "/metrics")["xid79"] == 1 })
	am := scrape("http://" + node.HTTPAddr + "/metrics")
	for _, name := range []string{metrics.DCGMGPUUtil, metrics.DCGMFBUsed, metrics.DCGMFBFree, metrics.DCGMPowerUsage, metrics.DCGMGPUTemp, metrics.DCGMXIDErrors} {
		if am[name] != 8 {
			t.Errorf("%s: %d series, want 8", name, am[name])
		}
	}
	if am["reason"] != 1 || am[metrics.NodeCPUUsed] != 1 {
		t.Errorf("agent metrics: %v", am)
	}
	sm := scrape(base + "/metrics")
	for _, name := range []string{metrics.EvalQueueDepth, metrics.Nodes, metrics.SchedulingLatency, metrics.PlanRejections} {
		if sm[name] == 0 {
			t.Errorf("server metrics lack %s", name)
		}
	}

	var hist api.NodeMetricsResponse
	eventually(t, "node usage history with GPUs", func() bool {
		return getJSON(t, base+"/v1/nodes/"+a.NodeID()+"/metrics", &hist) == nil && len(hist.Samples) > 0 &&
			len(hist.Samples[len(hist.Samples)-1].GPUs) == 8
	})
	last := hist.Samples[len(hist.Samples)-1]
	if g := last.GPUs[0]; g.MemoryTotal != 40960 || g.Power == nil || *g.Power != 61.5 || g.Temp == nil || *g.Temp != 33 {
		t.Errorf("GPU sample %+v", g)
	}
}
