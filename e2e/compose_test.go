package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// TestComposeDemoCluster builds the demo image from the gantry binary
// (deploy/compose/build-image.sh), starts deploy/compose's cluster with
// docker-compose, and checks that the three agents register, the demo job
// spreads over them and the UI answers; that the file with the optional
// monitoring profile is valid; and that every target the Prometheus
// configuration scrapes is a service of the file on the port it listens
// on. Everything is removed at the end.
func TestComposeDemoCluster(t *testing.T) {
	compose := requireUIDep(t, "docker-compose", "docker-compose")
	dir := filepath.Join(repoRoot, "deploy", "compose")
	file := filepath.Join(dir, "docker-compose.yml")
	image := fmt.Sprintf("gantry:e2e-compose-%d", os.Getpid())
	project := fmt.Sprintf("gantrye2e%d", os.Getpid())
	port := freePort(t)
	env := append(os.Environ(), "GANTRY_IMAGE="+image, fmt.Sprintf("GANTRY_PORT=%d", port))
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(filepath.Join(dir, "build-image.sh"), image)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", image).Run() })

	run(compose, "-f", file, "config", "-q")
	run(compose, "-f", file, "--profile", "monitoring", "config", "-q")

	t.Cleanup(func() {
		cmd := exec.Command(compose, "-p", project, "-f", file, "down", "-v", "--remove-orphans", "-t", "5")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	run(compose, "-p", project, "-f", file, "up", "-d")
	c := &Cluster{t: t, Addr: fmt.Sprintf("http://127.0.0.1:%d", port)}
	c.api = apiclient.New(apiclient.Options{Servers: []string{c.Addr}})
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(compose, "-p", project, "-f", file, "logs", "--tail", "30")
			cmd.Env = env
			out, _ := cmd.CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
	})
	c.Eventually(90*time.Second, "three ready nodes", func() bool {
		var nodes []*api.Node
		if c.GetJSON("/v1/nodes", &nodes) != nil {
			return false
		}
		ready := 0
		for _, n := range nodes {
			if n.Status == api.NodeStatusReady {
				ready++
			}
		}
		return ready == 3
	})
	c.Eventually(90*time.Second, "the demo job on every node", func() bool {
		var as []*api.Allocation
		if c.GetJSON("/v1/jobs/demo/allocations", &as) != nil {
			return false
		}
		per := map[string]int{}
		for _, a := range as {
			if a.ClientStatus == api.AllocRunning {
				per[a.NodeName]++
			}
		}
		return len(per) == 3 && per["agent-1"] == 1 && per["agent-2"] == 1 && per["agent-3"] == 1
	})
	if code := httpGetStatus(t, c.Addr+"/ui/", ""); code != 200 {
		t.Errorf("the UI answered %d", code)
	}
	scrapeMetrics(t, c.Addr+"/metrics")

	// The Prometheus configuration scrapes the services of the file.
	var cf struct {
		Services map[string]struct {
			Command []string `json:"command"`
		} `json:"services"`
	}
	b, _ := os.ReadFile(file)
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	var pc struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	b, _ = os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"))
	if err := yaml.Unmarshal(b, &pc); err != nil {
		t.Fatal(err)
	}
	targets := 0
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets++
				host, p, _ := net.SplitHostPort(tg)
				svc, ok := cf.Services[host]
				if !ok {
					t.Errorf("prometheus scrapes %s: no such service", tg)
					continue
				}
				if !strings.Contains(strings.Join(svc.Command, " "), "0.0.0.0:"+p) {
					t.Errorf("prometheus scrapes %s, but the service does not listen on port %s: %v", tg, p, svc.Command)
				}
			}
		}
	}
	if targets != 4 {
		t.Errorf("prometheus scrapes %d targets, want the server and three agents", targets)
	}
}
