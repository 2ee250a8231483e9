package vsphere

import (
	"context"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/vim25/types"
)

// RealTimeInterval is the PerformanceManager's real-time interval: hosts
// and VMs are sampled every 20 seconds.
const RealTimeInterval = 20 * time.Second

// Counters read each round, by the entity they are read from. Units:
// cpu.usage and mem.usage in hundredths of a percent, cpu.ready in
// milliseconds per interval (summed over vCPUs), memory in KB, disk
// latency in ms, network in KB/s.
var (
	hostCounters = []string{"cpu.usage.average", "cpu.ready.summation", "mem.usage.average", "mem.vmmemctl.average",
		"mem.swapused.average", "disk.maxTotalLatency.latest", "net.usage.average"}
	vmCounters = []string{"cpu.usage.average", "cpu.ready.summation", "mem.usage.average", "mem.vmmemctl.average",
		"mem.swapped.average", "disk.maxTotalLatency.latest", "net.usage.average"}
)

// ToSample converts one entity's latest counter values into a sample.
// CPU ready becomes a percentage of the interval per vCPU (per core for
// a host), the way vSphere's charts show it: ready ms / (interval ms ×
// CPUs) × 100. It is pure.
func ToSample(t time.Time, values map[string]int64, cpus int, interval time.Duration) api.VSphereSample {
	if cpus < 1 {
		cpus = 1
	}
	s := api.VSphereSample{Time: t}
	s.CPUUsage = float32(values["cpu.usage.average"]) / 100
	if interval > 0 {
		s.CPUReady = float32(float64(values["cpu.ready.summation"]) / (float64(interval.Milliseconds()) * float64(cpus)) * 100)
	}
	s.MemUsage = float32(values["mem.usage.average"]) / 100
	s.BalloonMiB = float32(values["mem.vmmemctl.average"]) / 1024
	s.SwappedMiB = float32(values["mem.swapped.average"]+values["mem.swapused.average"]) / 1024
	s.DiskLatencyMs = float32(values["disk.maxTotalLatency.latest"])
	s.NetKBps = float32(values["net.usage.average"])
	return s
}

// latest is one entity's newest value of each counter (aggregate
// instance) and when it was sampled.
type latest struct {
	t      time.Time
	values map[string]int64
}

// queryLatest reads the newest real-time sample of counters for refs, in
// batches of batch entities per QueryPerf call.
func queryLatest(ctx context.Context, pm *performance.Manager, refs []types.ManagedObjectReference, counters []string, batch int) (map[types.ManagedObjectReference]latest, error) {
	out := make(map[types.ManagedObjectReference]latest, len(refs))
	spec := types.PerfQuerySpec{IntervalId: int32(RealTimeInterval / time.Second), MaxSample: 1, MetricId: []types.PerfMetricId{{Instance: ""}}}
	for i := 0; i < len(refs); i += batch {
		chunk := refs[i:min(i+batch, len(refs))]
		res, err := pm.SampleByName(ctx, spec, counters, chunk)
		if err != nil {
			return nil, fmt.Errorf("query performance counters of %d entities: %w", len(chunk), err)
		}
		series, err := pm.ToMetricSeries(ctx, res)
		if err != nil {
			return nil, fmt.Errorf("read performance counters: %w", err)
		}
		for _, em := range series {
			l := latest{values: map[string]int64{}}
			if n := len(em.SampleInfo); n > 0 {
				// vCenter lists samples oldest first; take the newest.
				l.t = em.SampleInfo[0].Timestamp
				for _, si := range em.SampleInfo {
					if si.Timestamp.After(l.t) {
						l.t = si.Timestamp
					}
				}
			}
			for _, v := range em.Value {
				if v.Instance != "" || len(v.Value) == 0 {
					continue
				}
				newest := v.Value[len(v.Value)-1]
				if len(em.SampleInfo) == len(v.Value) {
					for k, si := range em.SampleInfo {
						if si.Timestamp.Equal(l.t) {
							newest = v.Value[k]
						}
					}
				}
				l.values[v.Name] = newest
			}
			out[em.Entity] = l
		}
	}
	return out, nil
}
