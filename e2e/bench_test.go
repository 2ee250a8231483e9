package e2e

import (
	"flag"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

var rounds = flag.Int("rounds", 5, "rounds per BenchmarkStartup case; the median is reported")

// BenchmarkStartup measures the time from `gantry job run --detach` until every
// replica answers its HTTP health check, for 1 and 50 replicas of the demo
// image, beside `docker run -d` of the same image plus polling the same
// endpoint, in the same run, alternating. A replica is polled once Gantry
// reports it running, as a docker container once `docker run -d`
// returned. It reports medians over -rounds rounds and the ratio
// gantry/docker.
//
//	go test -run '^$' -bench Startup -benchtime 1x ./e2e/
func BenchmarkStartup(b *testing.B) {
	c := StartDev(b)
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			var g, d []time.Duration
			for r := 0; r < *rounds; r++ {
				d = append(d, dockerRound(b, n))
				g = append(g, gantryRound(b, c, n, r))
			}
			gm, dm := median(g), median(d)
			b.ReportMetric(float64(gm.Milliseconds()), "gantry-ms")
			b.ReportMetric(float64(dm.Milliseconds()), "docker-ms")
			b.ReportMetric(float64(gm)/float64(dm), "ratio")
			b.Logf("replicas=%d gantry %v docker %v (rounds: gantry %v docker %v)", n, gm, dm, g, d)
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func healthy(port int) bool {
	// A short timeout: while a container is being created the port is
	// already bound and a request to it hangs instead of being refused.
	resp, err := (&http.Client{Timeout: 100 * time.Millisecond}).Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func gantryRound(b *testing.B, c *Cluster, n, round int) time.Duration {
	name := fmt.Sprintf("bench-%d-%d", n, round)
	spec := WriteSpec(b, name+".yaml", fmt.Sprintf(`name: %s
groups:
  - name: web
    count: %d
    tasks:
      - name: server
        driver: docker
        config: {image: %s, ports: [{name: http, to: 8080}]}
        resources: {cpu: 10, memory: 32}
`, name, n, DemoImage))
	start := time.Now()
	if r := c.Gantry("job", "run", "--detach", spec); r.Code != 0 {
		b.Fatalf("job run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	up := map[string]bool{}
	for len(up) < n {
		if time.Since(start) > 3*time.Minute {
			b.Fatalf("%d/%d replicas healthy after 3m", len(up), n)
		}
		var as []*api.Allocation
		if err := c.GetJSON("/v1/jobs/"+name+"/allocations", &as); err != nil {
			b.Fatal(err)
		}
		for _, a := range as {
			// Poll a replica once Gantry reports it running, as the
			// docker round polls once `docker run -d` returned: a
			// connection to the published port while the container's
			// network is still being wired can lose its SYN, and the
			// kernel sends it again only after a second.
			if up[a.ID] || a.ClientStatus != api.AllocRunning {
				continue
			}
			if p, ok := a.Resources["server"].Port("http"); ok && healthy(p.Host) {
				up[a.ID] = true
			}
		}
		if len(up) < n {
			time.Sleep(10 * time.Millisecond)
		}
	}
	took := time.Since(start)
	if r := c.Gantry("job", "stop", name); r.Code != 0 {
		b.Fatalf("job stop: %s %s", r.Stdout, r.Stderr)
	}
	return took
}

func dockerRound(b testing.TB, n int) time.Duration {
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(b)
	}
	label := fmt.Sprintf("gantry-bench=%d", time.Now().UnixNano())
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command("docker", "run", "-d", "--label", label, "-p", fmt.Sprintf("127.0.0.1:%d:8080", p), DemoImage).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("docker run: %v %s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, p := range ports {
		for !healthy(p) {
			if time.Since(start) > 3*time.Minute {
				b.Fatal("docker replicas not healthy after 3m")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	took := time.Since(start)
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
	return took
}
