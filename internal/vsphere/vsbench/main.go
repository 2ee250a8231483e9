// Command vsbench measures the virtualization monitor's collector over a
// simulated vCenter (govmomi's vcsim, in process): the time of the first
// full inventory, the time of each performance round, and the memory of a
// full history. It is a README command, not a test:
//
//	go run ./internal/vsphere/vsbench -clusters 10 -cluster-hosts 100 -vms 1000 -rounds 5
//
// With -url it runs one collector, at the real 20 s interval, against a
// vCenter (or `gantry vsphere simulate`) in another process and prints a
// line per round until it is stopped: bench/vsphere-sched.sh runs the
// scheduler's benchmark beside it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
)

func main() {
	cfg := vcsim.Default()
	cfg.Standalone = 0
	flag.IntVar(&cfg.Clusters, "clusters", 10, "clusters")
	flag.IntVar(&cfg.HostsPerCluster, "cluster-hosts", 100, "hosts per cluster")
	flag.IntVar(&cfg.VMs, "vms", 1000, "VMs per cluster")
	flag.IntVar(&cfg.Datastores, "datastores", 10, "datastores")
	rounds := flag.Int("rounds", 5, "performance rounds to time")
	history := flag.Int("history", vsphere.DefaultHistory, "samples per entity for the memory figure (180: one hour at 20 s)")
	url := flag.String("url", "", "collect from this vCenter SDK URL instead of an in-process simulator, every -interval, until stopped")
	user := flag.String("user", cfg.User, "user, with -url")
	pwFile := flag.String("password-file", "", "file holding the password, with -url")
	caFile := flag.String("ca", "", "PEM of the vCenter's CA, with -url")
	interval := flag.Duration("interval", vsphere.RealTimeInterval, "performance round, with -url")
	flag.Parse()
	if *url != "" {
		if err := watch(*url, *user, *pwFile, *caFile, *interval); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	// The memory of a full history: the same History the collector keeps,
	// filled with -history samples (measured first, before the simulator
	// takes its share of the heap) for every host, VM and datastore.
	entities := cfg.Clusters*cfg.HostsPerCluster + cfg.Clusters*cfg.VMs + cfg.Datastores
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := vsphere.NewHistory(*history, 0)
	start := time.Unix(1_700_000_000, 0)
	for e := range entities {
		id := fmt.Sprintf("e-%d", e)
		for i := range *history {
			h.Add(id, api.VSphereSample{Time: start.Add(time.Duration(i) * vsphere.RealTimeInterval), CPUUsage: float32(i)})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	fmt.Printf("history of %d samples for %d entities: %.1f MiB of heap (%.0f bytes a sample)\n", *history, h.Entities(),
		float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), float64(after.HeapAlloc-before.HeapAlloc)/float64(entities**history))
	runtime.KeepAlive(h)

	t0 := time.Now()
	sim, err := vcsim.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer sim.Close()
	count := sim.Model.Count()
	fmt.Printf("simulator: %d hosts, %d VMs, %d datastores (built in %s)\n", count.Host, count.Machine, count.Datastore, time.Since(t0).Round(time.Millisecond))

	c := vsphere.NewCollector(vsphere.Connection{Name: "bench", URL: sim.URL, User: cfg.User, Password: cfg.Password, CACert: sim.CACert},
		vsphere.Options{Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	var last time.Time
	var durations []time.Duration
	for len(durations) < *rounds {
		st := c.Status(false)
		if st.LastError != "" && st.LastError != "not connected yet" {
			fmt.Fprintln(os.Stderr, "collector:", st.LastError)
		}
		if !st.RoundTime.IsZero() && !st.RoundTime.Equal(last) {
			if !last.IsZero() { // the first round overlaps the first inventory's hand-over
				durations = append(durations, st.RoundDuration.D())
			}
			last = st.RoundTime
			if len(durations) == 0 && st.FirstInventory > 0 && last.Equal(st.RoundTime) {
				fmt.Printf("first full inventory: %s (%d hosts, %d VMs)\n", st.FirstInventory.D().Round(time.Millisecond), st.Counts.Hosts, st.Counts.VMs)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	fmt.Printf("performance rounds (%d hosts + powered-on VMs, 7 counters each): median %s, min %s, max %s over %d rounds\n",
		count.Host, durations[len(durations)/2].Round(time.Millisecond), durations[0].Round(time.Millisecond), durations[len(durations)-1].Round(time.Millisecond), len(durations))

}

// watch runs one collector against the vCenter at url until interrupted,
// printing the first inventory and every performance round as they end.
func watch(url, user, pwFile, caFile string, interval time.Duration) error {
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return fmt.Errorf("read -password-file: %w", err)
	}
	var ca []byte
	if caFile != "" {
		if ca, err = os.ReadFile(caFile); err != nil {
			return fmt.Errorf("read -ca: %w", err)
		}
	}
	c := vsphere.NewCollector(vsphere.Connection{Name: "bench", URL: url, User: user, Password: strings.TrimSpace(string(pw)), CACert: string(ca)},
		vsphere.Options{Interval: interval})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	var last time.Time
	var inventory bool
	for ctx.Err() == nil {
		st := c.Status(false)
		if !inventory && st.FirstInventory > 0 {
			inventory = true
			fmt.Printf("first full inventory: %s (%d hosts, %d VMs)\n", st.FirstInventory.D().Round(time.Millisecond), st.Counts.Hosts, st.Counts.VMs)
		}
		if !st.RoundTime.IsZero() && !st.RoundTime.Equal(last) {
			last = st.RoundTime
			fmt.Printf("round ended %s took %.3f s\n", last.Format(time.RFC3339), st.RoundDuration.D().Seconds())
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-done
	return nil
}
