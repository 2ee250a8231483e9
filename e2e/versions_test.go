package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	etcdversion "go.etcd.io/etcd/api/v3/version"
)

// TestVersionInventory checks that the node's inventory reports the
// Docker engine's own answer (engine, API, containerd, runc, as `docker
// version` prints them) and the kernel, and that `gantry version report`
// renders the inventory with its findings and an upgrade order in both
// formats.
func TestVersionInventory(t *testing.T) {
	out, err := exec.Command("docker", "version", "--format", "{{json .Server}}").Output()
	if err != nil {
		t.Fatalf("docker version: %v", err)
	}
	var server struct {
		Version    string
		APIVersion string `json:"ApiVersion"`
		Components []struct{ Name, Version string }
	}
	if err := json.Unmarshal(out, &server); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"docker": server.Version, "docker-api": server.APIVersion}
	for _, c := range server.Components {
		if n := strings.ToLower(c.Name); n == "containerd" || n == "runc" {
			want[n] = c.Version
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	want["kernel"] = strings.TrimSpace(string(kernel))

	c := StartDev(t)
	r := c.Gantry("version", "inventory", "--json")
	if r.Code != 0 {
		t.Fatalf("version inventory: exit %d\n%s", r.Code, r.Stderr)
	}
	var inv struct {
		Inventory map[string]map[string]string
	}
	if err := json.Unmarshal([]byte(r.Stdout), &inv); err != nil || len(inv.Inventory) != 2 {
		t.Fatalf("inventory (one node, one etcd member) %v:\n%s", err, r.Stdout)
	}
	for name, node := range inv.Inventory {
		if strings.HasPrefix(name, "etcd ") {
			// The embedded etcd answers with its own version.
			if node["etcd"] != etcdversion.Version {
				t.Errorf("%s: etcd %q, want %q", name, node["etcd"], etcdversion.Version)
			}
			continue
		}
		for comp, v := range want {
			if node[comp] != v {
				t.Errorf("%s: inventory says %q, the machine says %q", comp, node[comp], v)
			}
		}
	}

	// The UI's node page lists them.
	resp, err := http.Get(c.Addr + "/ui/fragments/nodes/" + c.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Component versions") || !strings.Contains(string(page), strings.ReplaceAll(want["runc"], "+", "&#43;")) {
		t.Errorf("the UI node page lacks the component versions:\n%s", page)
	}

	md := c.Gantry("version", "report")
	if md.Code != 0 || !strings.Contains(md.Stdout, "## Upgrade order") || !strings.Contains(md.Stdout, server.Version) {
		t.Fatalf("version report: exit %d\n%s%s", md.Code, md.Stdout, md.Stderr)
	}
	js := c.Gantry("version", "report", "--format", "json")
	var rep struct {
		Components []string
		Findings   []json.RawMessage
		Upgrade    []json.RawMessage
	}
	if js.Code != 0 || json.Unmarshal([]byte(js.Stdout), &rep) != nil || len(rep.Components) == 0 || rep.Findings == nil || rep.Upgrade == nil {
		t.Fatalf("version report --format json: exit %d\n%s%s", js.Code, js.Stdout, js.Stderr)
	}
	// A policy that flags the engine's own version makes the node the
	// one to upgrade.
	policy := WriteSpec(t, "policy.yaml", "components:\n  docker:\n    known_bad: [{range: \"<= "+strings.SplitN(server.Version, "+", 2)[0]+"\", note: test entry}]\n")
	flagged := c.Gantry("version", "report", "--policy", policy)
	if flagged.Code != 0 || !strings.Contains(flagged.Stdout, "known-bad range") || !strings.Contains(flagged.Stdout, "1. e2e-") {
		t.Fatalf("version report with a policy against this engine: exit %d\n%s%s", flagged.Code, flagged.Stdout, flagged.Stderr)
	}
	// The same policy applied to the cluster: stored, shown, used by the
	// report and /v1/versions without --policy.
	if r := c.Gantry("version", "policy", "apply", policy); r.Code != 0 {
		t.Fatalf("version policy apply: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("version", "policy", "show"); r.Code != 0 || !strings.Contains(r.Stdout, "(applied)") || !strings.Contains(r.Stdout, "test entry") {
		t.Fatalf("version policy show: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("version", "report"); r.Code != 0 || !strings.Contains(r.Stdout, "known-bad range") {
		t.Fatalf("version report with the applied policy: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	bad := WriteSpec(t, "bad.yaml", "components:\n  docker:\n    minimum: latest\n")
	if r := c.Gantry("version", "policy", "apply", bad); r.Code != 1 || !strings.Contains(r.Stderr, "components.docker.minimum") {
		t.Fatalf("a bad version policy: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestVersionChange restarts the node's agent with a test-only override of
// the Docker engine version it reports (GANTRY_TEST_DOCKER_VERSION) and
// checks that the change arrives as a node event carrying the new version
// and a ComponentVersionChanged event naming the node and the old and new
// versions, as the gantry_component_info series, in /v1/versions, and in a report
// whose policy names that version.
func TestVersionChange(t *testing.T) {
	c := StartDev(t)
	c.Stop()
	t.Setenv("GANTRY_TEST_DOCKER_VERSION", "19.3.15")
	c.Start()

	c.Eventually(time.Minute, "a node event with the new Docker version", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Addr+"/v1/events?topic=node&index=1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // ends at the deadline
		return strings.Contains(string(b), `"driver.docker.version":"19.3.15"`)
	})
	// The same update carries an event of its own for the component:
	// which node, the version before and after.
	c.Eventually(30*time.Second, "a ComponentVersionChanged event for docker", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Addr+"/v1/events?topic=node&index=1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // ends at the deadline
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Type    string
				Payload struct{ Node, Component, Old, New string }
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Type == "ComponentVersionChanged" &&
				e.Payload.Component == "docker" && e.Payload.New == "19.3.15" && e.Payload.Old != "" && e.Payload.Old != "19.3.15" && strings.HasPrefix(e.Payload.Node, "e2e-") {
				return true
			}
		}
		return false
	})
	c.Eventually(30*time.Second, "the gantry_component_info series", func() bool {
		resp, err := http.Get(c.Addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `gantry_component_info{component="docker",node="`) && strings.Contains(string(b), `version="19.3.15"}`)
	})
	var v struct {
		Inventory map[string]map[string]string
		Findings  []struct{ Kind, Component, Version string }
	}
	if err := c.GetJSON("/v1/versions", &v); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range v.Findings {
		found = found || (f.Kind == "below-minimum" && f.Component == "docker" && f.Version == "19.3.15")
	}
	if !found {
		t.Errorf("/v1/versions does not find docker 19.3.15 below the starting policy's minimum: %+v", v)
	}
	r := c.Gantry("version", "report")
	if r.Code != 0 || !strings.Contains(r.Stdout, "docker 19.3.15 is below the minimum 20.10.0") || !strings.Contains(r.Stdout, "1. e2e-") {
		t.Fatalf("version report after the change: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
