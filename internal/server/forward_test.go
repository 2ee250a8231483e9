package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/state/statetest"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
)

// startFollower starts a second server, id, over the leader's etcd and
// store prefix; it stops when the test ends.
func startFollower(t *testing.T, leader *Server, id, httpAddr string) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cli, err := state.Dial(ctx, leader.store.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.Open(ctx, cli, "/test/", log)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{ID: id, HTTPAddr: httpAddr}, st, log)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait(); st.Close(); cli.Close() })
	return s
}

func do(t *testing.T, method, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestFollowerForwardsVSphere: a server that does not lead answers the
// vSphere reads and writes by forwarding them to the leader, whose
// collectors they concern: a connection added through the follower is
// tried and collected by the leader, and its status and history read
// through the follower. A request already forwarded once is not passed
// on again, and a leader that gave no reachable address is one sentence.
func TestFollowerForwardsVSphere(t *testing.T) {
	sim, err := vcsim.Start(vcsim.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close) // after the servers' cleanups: their collectors log out first
	leader := startTestServer(t, Config{})
	waitFor(t, "leadership", leader.IsLeader)
	follower := startFollower(t, leader, "s2", "127.0.0.1:0")
	fbase := "http://" + follower.Addr()
	if follower.IsLeader() {
		t.Fatal("the second server leads")
	}

	body, _ := json.Marshal(api.VSphereConnectRequest{Name: "sim", URL: sim.URL, User: "gantry", Password: "simulated", CACert: sim.CACert})
	resp, text := do(t, http.MethodPut, fbase+"/v1/vsphere/connections", string(body), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(leaderHeader) != "s1" {
		t.Fatalf("add through the follower: %s (leader header %q) %s", resp.Status, resp.Header.Get(leaderHeader), text)
	}
	var sts []api.VSphereStatus
	waitFor(t, "the simulator's inventory through the follower", func() bool {
		resp, text := do(t, http.MethodGet, fbase+"/v1/vsphere/status", "", nil)
		sts = nil
		return resp.StatusCode == http.StatusOK && json.Unmarshal([]byte(text), &sts) == nil &&
			len(sts) == 1 && sts[0].Connected && sts[0].Counts.VMs == sim.Model.Count().Machine
	})
	if resp, text := do(t, http.MethodGet, fbase+"/v1/vsphere/status/sim", "", nil); resp.StatusCode != http.StatusOK || !strings.Contains(text, `"DC0_H0_VM0"`) {
		t.Errorf("one connection's status through the follower: %s %.200s", resp.Status, text)
	}
	if resp, text := do(t, http.MethodGet, fbase+"/v1/vsphere/history/DC0_H0_VM0", "", nil); resp.StatusCode != http.StatusOK || !strings.Contains(text, `"kind": "vm"`) {
		t.Errorf("a VM's history through the follower: %s %.200s", resp.Status, text)
	}
	// The leader's errors come back as they are.
	if resp, text := do(t, http.MethodGet, fbase+"/v1/vsphere/history/no-such-vm", "", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(text, "no-such-vm") {
		t.Errorf("an unknown VM's history through the follower: %s %s, want the leader's 404", resp.Status, text)
	}

	// Forwarded once only: a follower that is sent a forwarded request
	// says that leadership is moving.
	resp, text = do(t, http.MethodGet, fbase+"/v1/vsphere/status", "", map[string]string{forwardedHeader: "s3"})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(text, "leadership is moving") {
		t.Errorf("a forwarded request at a follower: %s (Retry-After %q) %s, want a retryable 503", resp.Status, resp.Header.Get("Retry-After"), text)
	}

	resp, text = do(t, http.MethodDelete, fbase+"/v1/vsphere/connections/sim", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("remove through the follower: %s %s", resp.Status, text)
	}
	waitFor(t, "the leader's collector to stop", func() bool { return len(leader.vsphere.Collectors()) == 0 })
}

// TestForwardToLeaderWithoutAddress: a leader listening on a wildcard
// address, without --advertise-addr, gives no address to forward to; the
// follower says so in one sentence instead of guessing.
func TestForwardToLeaderWithoutAddress(t *testing.T) {
	st := statetest.Open(t, "/test/")
	ctx, cancel := context.WithCancel(context.Background())
	leader := New(Config{ID: "s1", HTTPAddr: "0.0.0.0:0"}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := leader.Start(ctx); err != nil {
		cancel()
		t.Skipf("cannot listen on a wildcard address here: %v", err)
	}
	t.Cleanup(func() { cancel(); leader.Wait() })
	waitFor(t, "leadership", leader.IsLeader)
	follower := startFollower(t, leader, "s2", "127.0.0.1:0")
	resp, text := do(t, http.MethodGet, "http://"+follower.Addr()+"/v1/vsphere/status", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(text, "--advertise-addr") {
		t.Errorf("status through a follower of a leader without an address: %s %s, want 503 naming --advertise-addr", resp.Status, text)
	}
}

// TestAdvertisedURL: the address a server campaigns with.
func TestAdvertisedURL(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, tc := range []struct {
		advertise string
		listen    net.Addr
		tls       bool
		want      string
	}{
		{"", tcp("127.0.0.1:7700"), false, "http://127.0.0.1:7700"},
		{"", tcp("10.0.0.5:7700"), true, "https://10.0.0.5:7700"},
		{"", tcp("0.0.0.0:7700"), false, ""},
		{"", tcp("[::]:7700"), false, ""},
		{"", tcp(":7700"), false, ""},
		{"gantry-1.example:7700", tcp("0.0.0.0:7700"), true, "https://gantry-1.example:7700"},
		{"http://10.0.0.5:7700/", tcp("0.0.0.0:7700"), true, "http://10.0.0.5:7700"},
		{"", tcp("[fd00::5]:7700"), false, "http://[fd00::5]:7700"},
	} {
		if got := advertisedURL(tc.advertise, tc.listen, tc.tls); got != tc.want {
			t.Errorf("advertisedURL(%q, %v, tls %v) = %q, want %q", tc.advertise, tc.listen, tc.tls, got, tc.want)
		}
	}
}
