package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestComposeUpThreeServices deploys examples/compose/compose.yaml with
// `gantry compose up`, as the README shows: web behind the load balancer
// calls api by its Compose service name, worker waits for api to be
// healthy. The images are the demo app built FROM scratch from this tree
// under a tag of this test's own (other test runs rebuild
// gantry-demo:latest from theirs). It checks the start order, that web
// reaches api by name through the load balancer, that a second `up`
// changes nothing, that a changed file rolls only the service that
// changed, that a GPU reservation no node can hold is refused before
// anything is deployed (exit 2), and that `down` leaves no container.
func TestComposeUpThreeServices(t *testing.T) {
	image := fmt.Sprintf("gantry-demo:compose-e2e-%d", os.Getpid())
	if out, err := exec.Command(filepath.Join(repoRoot, "scripts", "build-demo-image.sh"), image).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", image, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", image).Run() })

	// The load balancer listens on every address so that containers reach
	// it at the bridge gateway, where the agent's DNS for containers
	// points service names.
	c := StartDev(t, "--lb", "--lb-address", "0.0.0.0", "--lb-access-log=false")
	webPort, apiPort := freePort(t), freePort(t)
	t.Setenv("DEMO_IMAGE", image)
	t.Setenv("WEB_PORT", fmt.Sprint(webPort))
	t.Setenv("API_PORT", fmt.Sprint(apiPort))
	project := fmt.Sprintf("shop%d", os.Getpid())
	file := filepath.Join(repoRoot, "examples", "compose", "compose.yaml")
	compose := func(args ...string) Result {
		t.Helper()
		return c.Gantry(append([]string{"compose", "-f", file, "-p", project}, args...)...)
	}

	// Refused whole: a GPU reservation no node can hold, before anything runs.
	gpu := WriteSpec(t, "gpu.yaml", fmt.Sprintf(`services:
  train:
    image: %s
    deploy:
      resources:
        reservations:
          devices: [{capabilities: [gpu], count: 1}]
  web:
    image: %s
`, image, image))
	r := c.Gantry("compose", "-f", gpu, "-p", project+"gpu", "up")
	if r.Code != 2 || !strings.Contains(r.Stderr, "service train") || !strings.Contains(r.Stderr, "Nothing was deployed") {
		t.Fatalf("compose up of a GPU reservation: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if s := c.Gantry("job", "status", "-n", project+"gpu"); !strings.Contains(s.Stdout, "No jobs") {
		t.Fatalf("a refused project left jobs behind:\n%s", s.Stdout)
	}

	r = compose("up", "--timeout", "3m")
	if r.Code != 0 {
		t.Fatalf("compose up: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	api := strings.Index(r.Stdout, "==> Service api:")
	web := strings.Index(r.Stdout, "==> Service web:")
	worker := strings.Index(r.Stdout, "==> Service worker:")
	// api is healthy once its deployment succeeded (a service job rolls
	// under a deployment, the default update block's).
	healthy := -1
	if api >= 0 {
		if i := strings.Index(r.Stdout[api:], "successful: every replica of version 0 is healthy"); i >= 0 {
			healthy = api + i
		}
	}
	if api < 0 || healthy < api || web < healthy || worker < healthy {
		t.Fatalf("services not started after api was healthy:\n%s", r.Stdout)
	}

	// web (behind the load balancer) calls api by its service name.
	var answer struct{ Version string }
	c.Eventually(time.Minute, "web to reach api by name", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/upstream", webPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && json.Unmarshal(b, &answer) == nil && answer.Version == "api-v1"
	})

	// The name went through Gantry's DNS for containers: web's
	// containers have the agent's resolver, the project's search domain
	// and no /etc/hosts entry for api; the resolver answers the name with
	// the load balancer's address.
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=gantry.namespace="+project, "--filter", "label=gantry.job=web").Output()
	if err != nil || len(strings.Fields(string(out))) == 0 {
		t.Fatalf("web's containers: %v %q", err, out)
	}
	insp, err := exec.Command("docker", "inspect", "-f", "{{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{json .HostConfig.ExtraHosts}}", strings.Fields(string(out))[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(insp))
	var servers, search []string
	if len(fields) != 3 || json.Unmarshal([]byte(fields[0]), &servers) != nil || json.Unmarshal([]byte(fields[1]), &search) != nil ||
		len(servers) != 1 || len(search) != 1 || search[0] != project+".lb.gantry" || (fields[2] != "null" && fields[2] != "[]") {
		t.Fatalf("web's container: dns, search and extra hosts %s; want the node's resolver, %s.lb.gantry and none", insp, project)
	}
	m := new(mdns.Msg)
	m.SetQuestion("api."+project+".lb.gantry.", mdns.TypeA)
	in, err := mdns.Exchange(m, net.JoinHostPort(servers[0], "53"))
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*mdns.A).A.String() != servers[0] {
		t.Fatalf("the resolver's answer for api: %v %v, want %s", in, err, servers[0])
	}

	ps := compose("ps")
	for _, want := range []string{"api", "web", "worker", "2/2"} {
		if !strings.Contains(ps.Stdout, want) {
			t.Errorf("compose ps lacks %q:\n%s", want, ps.Stdout)
		}
	}

	// Unchanged file: nothing changes.
	r = compose("up")
	if r.Code != 0 || strings.Count(r.Stdout, "unchanged at version 0") != 3 {
		t.Fatalf("second compose up changed something: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// A changed api: only api rolls.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	changed := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(changed, []byte(strings.Replace(string(data), "api-v1", "api-v2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r = c.Gantry("compose", "-f", changed, "-p", project, "up")
	if r.Code != 0 || !strings.Contains(r.Stdout, `Service api: job "api" registered as version 1`) || strings.Count(r.Stdout, "unchanged at version 0") != 2 {
		t.Fatalf("compose up of a changed api: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(time.Minute, "web to reach the new api", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/upstream", webPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return json.Unmarshal(b, &answer) == nil && answer.Version == "api-v2"
	})

	logs := compose("logs", "--tail", "5", "api")
	if !strings.Contains(logs.Stdout, "api.0") || !strings.Contains(logs.Stdout, "api-v2 listening") {
		t.Errorf("compose logs api:\n%s%s", logs.Stdout, logs.Stderr)
	}

	r = compose("down")
	if r.Code != 0 {
		t.Fatalf("compose down: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(time.Minute, "no container left", func() bool { return len(Containers(t, c.NodeID, true)) == 0 })
	if ps := compose("ps"); !strings.Contains(ps.Stdout, "No service") {
		t.Errorf("compose ps after down:\n%s", ps.Stdout)
	}
}
