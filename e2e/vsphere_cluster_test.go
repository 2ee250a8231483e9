package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// vsAnswer is one answer of a server's vSphere API.
type vsAnswer struct {
	code       int
	leader     string // X-Gantry-Leader: the server that answered, when forwarded
	retryAfter string
	body       string
}

func vsCall(t testing.TB, method, url string, body any) (vsAnswer, error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return vsAnswer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return vsAnswer{code: resp.StatusCode, leader: resp.Header.Get("X-Gantry-Leader"), retryAfter: resp.Header.Get("Retry-After"), body: string(b)}, nil
}

// serverID is the ID a fleet server gives in /v1/status.
func (f *Fleet) serverID(server string) string {
	var st api.StatusResponse
	if err := f.get(f.API(server), "/v1/status", &st); err != nil {
		f.t.Fatalf("status of %s: %v", server, err)
	}
	return st.Server
}

// TestVSphereOnFollowers (issue 18): in a cluster of three server
// containers, only the leader collects from vCenter (here a simulator in
// a fourth container), yet every server answers the vSphere API and the
// CLI: the followers forward to the leader. A connection is added,
// read, and removed through followers; after the leader is killed the
// survivors answer from the new leader's collector, and every answer in
// between is either the leader's or a retryable 503; once the quorum is
// lost too, the last server says in one sentence that it cannot tell
// which server leads, with Retry-After.
func TestVSphereOnFollowers(t *testing.T) {
	f := NewFleet(t, 3)
	sim := f.prefix + "-vcsim"
	// vcsim writes its inventory under /tmp, which a FROM scratch image lacks.
	docker(t, "run", "-d", "--name", sim, "--hostname", sim, "--network", f.net, "--tmpfs", "/tmp", f.image, "vsphere", "simulate", "--listen", "0.0.0.0:8989")
	leader := f.Leader()
	leaderID := f.serverID(leader)
	var followers []string
	for _, s := range f.servers {
		if s != leader {
			followers = append(followers, s)
		}
	}

	// Added through a follower: the leader tries it (the simulator may
	// still be starting) and stores it.
	conn := api.VSphereConnectRequest{Name: "sim", URL: "https://" + sim + ":8989/sdk", User: "gantry", Password: "simulated", Insecure: true}
	var added vsAnswer
	f.eventually(60*time.Second, "the connection added through a follower", func() bool {
		a, err := vsCall(t, http.MethodPut, f.API(followers[0])+"/v1/vsphere/connections", conn)
		added = a
		return err == nil && a.code == http.StatusOK
	})
	if added.leader != leaderID {
		t.Errorf("add answered by %q, want the leader %s", added.leader, leaderID)
	}

	// Every follower answers the status and a VM's history, from the
	// leader's collector.
	status := func(server string) ([]api.VSphereStatus, vsAnswer, error) {
		a, err := vsCall(t, http.MethodGet, f.API(server)+"/v1/vsphere/status", nil)
		var sts []api.VSphereStatus
		if err == nil && a.code == http.StatusOK {
			err = json.Unmarshal([]byte(a.body), &sts)
		}
		return sts, a, err
	}
	connected := func(sts []api.VSphereStatus) bool {
		return len(sts) == 1 && sts[0].Connection.Name == "sim" && sts[0].Connected && sts[0].Counts.VMs == 4 && sts[0].Counts.Hosts == 4
	}
	for _, fo := range followers {
		f.eventually(60*time.Second, "the simulator's inventory through follower "+fo, func() bool {
			sts, a, err := status(fo)
			return err == nil && a.leader == leaderID && connected(sts)
		})
		f.eventually(60*time.Second, "a VM's history through follower "+fo, func() bool {
			a, err := vsCall(t, http.MethodGet, f.API(fo)+"/v1/vsphere/history/DC0_H0_VM0", nil)
			return err == nil && a.code == http.StatusOK && strings.Contains(a.body, `"kind": "vm"`)
		})
	}
	if r := f.gantry(followers[1], "vsphere", "status"); r.Code != 0 || !strings.Contains(r.Stdout, "sim") || !strings.Contains(r.Stdout, "connected") {
		t.Errorf("gantry vsphere status at a follower: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The leader dies: until a new one collects, a survivor's answers
	// are retryable 503s, then the new leader's status.
	docker(t, "kill", "-s", "KILL", leader)
	t.Logf("killed the leader %s (%s)", leader, leaderID)
	var unavailable []string
	var last []api.VSphereStatus
	f.eventually(90*time.Second, "the connection through a survivor, from a new leader", func() bool {
		sts, a, err := status(followers[0])
		switch {
		case err != nil:
			t.Fatalf("a survivor did not answer: %v", err)
		case a.code == http.StatusServiceUnavailable:
			if a.retryAfter == "" {
				t.Errorf("503 without Retry-After: %s", a.body)
			}
			unavailable = append(unavailable, a.body)
		case a.code != http.StatusOK:
			t.Fatalf("a survivor answered %d %s, want the leader's answer or a retryable 503", a.code, a.body)
		}
		last = sts
		return a.code == http.StatusOK && a.leader != leaderID && connected(sts)
	})
	t.Logf("%d retryable answers while leadership moved (first: %.200s)", len(unavailable), strings.Join(unavailable, " | "))
	newLeader := f.Leader()
	if newLeader == "" || newLeader == leader {
		t.Fatalf("no new leader after the kill (status %+v)", last)
	}
	var follower string
	for _, s := range followers {
		if s != newLeader {
			follower = s
		}
	}

	// Removed through the follower of the new leader.
	if a, err := vsCall(t, http.MethodDelete, f.API(follower)+"/v1/vsphere/connections/sim", nil); err != nil || a.code != http.StatusOK {
		t.Fatalf("remove through a follower: %v %d %s", err, a.code, a.body)
	}
	f.eventually(30*time.Second, "no connection left", func() bool {
		sts, a, err := status(follower)
		return err == nil && a.code == http.StatusOK && len(sts) == 0
	})

	// The quorum goes: the last server cannot tell which server leads.
	docker(t, "kill", "-s", "KILL", newLeader)
	f.eventually(60*time.Second, "a retryable 503 from the last server", func() bool {
		_, a, err := status(follower)
		if err != nil {
			t.Fatalf("the last server did not answer: %v", err)
		}
		if a.code == http.StatusServiceUnavailable {
			var e api.Error
			if json.Unmarshal([]byte(a.body), &e) != nil || e.Error == "" || a.retryAfter == "" || strings.Count(strings.TrimSpace(e.Error), "\n") > 0 {
				t.Fatalf("503 without one sentence and Retry-After: %q (Retry-After %q)", a.body, a.retryAfter)
			}
			t.Logf("the last server says: %s", e.Error)
			return true
		}
		return false
	})
}
