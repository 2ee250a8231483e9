package suite

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/bench/report"
)

func failover() Suite {
	return Suite{
		Name:   "failover",
		Short:  "kill -9 of the leader of a 3-server cluster: time until the next accepted write and until a new leader",
		Target: func(*Env) string { return "3 gantry servers on loopback, one etcd cluster of their embedded members" },
		Run:    runFailover,
	}
}

// runFailover starts three servers (it always starts its own: it kills
// them), then, per kill, finds the leader, kills it with SIGKILL and
// writes a job through the other servers in turn until one accepts it,
// and watches for a new leader. The killed server is started again on
// its data before the next kill.
func runFailover(ctx context.Context, env *Env, rec *Recorder) error {
	kills := pick(env.Params.Kills, 2, 20, env.Quick)
	p, err := env.ports(9, 20)
	if err != nil {
		return err
	}
	servers := make([]*cluster, 3)
	args := make([][]string, 3)
	var members []string
	for i := range servers {
		members = append(members, fmt.Sprintf("s%d=http://127.0.0.1:%d", i+1, p[3*i+2]))
	}
	for i := range servers {
		dir := filepath.Join(env.Dir, fmt.Sprintf("failover-s%d", i+1))
		servers[i] = &cluster{env: env, addr: fmt.Sprintf("http://127.0.0.1:%d", p[3*i]), dataDir: dir}
		args[i] = []string{"server", "--insecure", "--data-dir", dir, "--http-addr", fmt.Sprintf("127.0.0.1:%d", p[3*i]),
			"--etcd-name", fmt.Sprintf("s%d", i+1),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", p[3*i+1]), "--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", p[3*i+2]),
			"--initial-cluster", strings.Join(members, ","), "--heartbeat-ttl", "5s", "--log-level", "warn"}
	}
	defer func() {
		for _, s := range servers {
			if s.proc != nil {
				s.stop()
			}
		}
	}()
	for i, s := range servers {
		if err := s.start(args[i]); err != nil {
			return err
		}
	}
	env.logf("    started 3 servers on %s, %s, %s", servers[0].addr, servers[1].addr, servers[2].addr)
	var write, elect []float64
	for k := range kills {
		leader, err := waitLeader(ctx, servers, -1, 90*time.Second)
		if err != nil {
			return err
		}
		s := servers[leader]
		_ = s.proc.Process.Signal(syscall.SIGKILL)
		killed := time.Now()
		_ = s.proc.Wait()
		accepted, err := nextWrite(ctx, servers, leader, fmt.Sprintf("failover-%d", k), 2*time.Minute)
		if err != nil {
			return fmt.Errorf("kill %d: %w", k+1, err)
		}
		write = append(write, ms(accepted.Sub(killed)))
		if _, err := waitLeader(ctx, servers, leader, 2*time.Minute); err != nil {
			return fmt.Errorf("kill %d: %w", k+1, err)
		}
		elect = append(elect, ms(time.Since(killed)))
		env.logf("    kill %d/%d: server s%d; next write accepted after %.0f ms, new leader after %.0f ms", k+1, kills, leader+1, write[len(write)-1], elect[len(elect)-1])
		// Back to three members on the same data before the next kill.
		if err := s.start(args[leader]); err != nil {
			return err
		}
		if err := waitStatus(ctx, s.addr, 90*time.Second); err != nil {
			return fmt.Errorf("server s%d after its restart: %w; its log ends: %s", leader+1, err, lastLines(s.log.String(), 5))
		}
	}
	w := report.NewFigure("failover/next-write", "ms", report.LowerIsBetter, write)
	w.Chart = &report.Chart{ID: "failover/times", Kind: "cdf", Title: "from kill -9 of the leader"}
	e := report.NewFigure("failover/new-leader", "ms", report.LowerIsBetter, elect)
	e.Chart = w.Chart
	rec.Add(w)
	rec.Add(e)
	rec.Note("%d kills; writes are job registrations sent to the surviving servers in turn, each with a 2 s timeout; new-leader is when a surviving server first reports itself leader (polled every 20 ms)", kills)
	return nil
}

// waitLeader returns the index of the server that leads, not counting
// skip, once one does.
func waitLeader(ctx context.Context, servers []*cluster, skip int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		for i, s := range servers {
			if i == skip || s.proc == nil || s.proc.ProcessState != nil {
				continue
			}
			var st api.StatusResponse
			if getJSON(ctx, s.addr, "", "/v1/status", &st) == nil && st.Leader {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no server leads after %s", limit)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return -1, err
		}
	}
}

var writeClient = &http.Client{Timeout: 2 * time.Second}

// nextWrite registers a job through the servers other than dead, in
// turn, until one accepts it, and returns when.
func nextWrite(ctx context.Context, servers []*cluster, dead int, name string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	body := fmt.Sprintf(`{"name": %q, "type": "batch", "groups": [{"name": "g", "count": 1, "tasks": [{"name": "t", "driver": "null", "resources": {"cpu": 10, "memory": 10}}]}]}`, name)
	var last error
	for {
		for i, s := range servers {
			if i == dead {
				continue
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.addr+"/v1/jobs", bytes.NewBufferString(body))
			if err != nil {
				return time.Time{}, err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := writeClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Now(), nil
				}
				err = fmt.Errorf("%s answered %s", s.addr, resp.Status)
			}
			last = err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no server accepted a write within %s: %v", limit, last)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}
