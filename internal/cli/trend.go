package cli

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

var sparkRunes = []rune("▁▂▃▄▅▆▇█")

// sparkline draws values (each in 0..max) as at most width bars, each the
// mean of the values it covers; NaN values leave a gap.
func sparkline(values []float64, maxV float64, width int) string {
	if len(values) == 0 || width <= 0 {
		return ""
	}
	n := min(len(values), width)
	var b strings.Builder
	for i := 0; i < n; i++ {
		lo, hi := i*len(values)/n, (i+1)*len(values)/n
		sum, cnt := 0.0, 0
		for _, v := range values[lo:hi] {
			if !math.IsNaN(v) {
				sum, cnt = sum+v, cnt+1
			}
		}
		if cnt == 0 || maxV <= 0 {
			b.WriteRune(' ')
			continue
		}
		f := sum / float64(cnt) / maxV
		k := int(math.Round(f * float64(len(sparkRunes)-1)))
		b.WriteRune(sparkRunes[min(max(k, 0), len(sparkRunes)-1)])
	}
	return b.String()
}

const trendWidth = 40

// printUsage shows the node's recent usage as one trend line per
// resource and per GPU, with the latest values.
func printUsage(w io.Writer, samples []api.NodeSample) {
	if len(samples) == 0 {
		return
	}
	first, last := samples[0], samples[len(samples)-1]
	span := last.Time.Sub(first.Time).Round(time.Second)
	fmt.Fprintf(w, "\nUsage (last %s, %d samples, oldest left)\n", span, len(samples))
	series := func(f func(s api.NodeSample) float64) []float64 {
		out := make([]float64, len(samples))
		for i, s := range samples {
			out[i] = f(s)
		}
		return out
	}
	pct := func(used, total int) float64 {
		if total <= 0 {
			return math.NaN()
		}
		return float64(used) / float64(total) * 100
	}
	fmt.Fprintf(w, "  %-8s %-*s %5.1f / %.1f cores\n", "CPU", trendWidth,
		sparkline(series(func(s api.NodeSample) float64 { return pct(s.CPUUsed, s.CPUTotal) }), 100, trendWidth),
		float64(last.CPUUsed)/1000, float64(last.CPUTotal)/1000)
	fmt.Fprintf(w, "  %-8s %-*s %5.1f / %.1f GiB\n", "Memory", trendWidth,
		sparkline(series(func(s api.NodeSample) float64 { return pct(s.MemoryUsed, s.MemoryTotal) }), 100, trendWidth),
		float64(last.MemoryUsed)/1024, float64(last.MemoryTotal)/1024)
	fmt.Fprintf(w, "  %-8s %-*s %5.1f / %.1f GiB\n", "Disk", trendWidth,
		sparkline(series(func(s api.NodeSample) float64 { return pct(s.DiskUsed, s.DiskTotal) }), 100, trendWidth),
		float64(last.DiskUsed)/1024, float64(last.DiskTotal)/1024)
	for i, g := range last.GPUs {
		uuid := g.UUID
		util := series(func(s api.NodeSample) float64 {
			for _, x := range s.GPUs {
				if x.UUID == uuid && x.Util != nil {
					return *x.Util
				}
			}
			return math.NaN()
		})
		mem := series(func(s api.NodeSample) float64 {
			for _, x := range s.GPUs {
				if x.UUID == uuid {
					return pct(x.MemoryUsed, x.MemoryTotal)
				}
			}
			return math.NaN()
		})
		line := sparkline(util, 100, trendWidth)
		what := "util"
		now := "-"
		if g.Util != nil {
			now = fmt.Sprintf("%.0f%%", *g.Util)
		} else {
			line, what = sparkline(mem, 100, trendWidth), "memory"
		}
		extra := fmt.Sprintf("mem %.1f/%.1f GiB", float64(g.MemoryUsed)/1024, float64(g.MemoryTotal)/1024)
		if g.Power != nil {
			extra += fmt.Sprintf("  %.0f W", *g.Power)
		}
		if g.Temp != nil {
			extra += fmt.Sprintf("  %.0f C", *g.Temp)
		}
		fmt.Fprintf(w, "  %-8s %-*s %s %s  %s\n", fmt.Sprintf("GPU %d", i), trendWidth, line, what, now, extra)
	}
}

// gpuLine describes one GPU of a node for `node status`.
func gpuLine(d api.GPUDevice) string {
	parts := []string{fmt.Sprintf("%d MiB", d.Memory)}
	if d.ComputeCapability != "" {
		parts = append(parts, "cc "+d.ComputeCapability)
	}
	if d.PCIBusID != "" {
		parts = append(parts, d.PCIBusID)
	}
	if d.NUMANode >= 0 {
		parts = append(parts, fmt.Sprintf("numa %d", d.NUMANode))
	}
	if len(d.NVLinkPeers) > 0 {
		parts = append(parts, fmt.Sprintf("nvlink peers %d", len(d.NVLinkPeers)))
	}
	if d.MIGEnabled {
		m := fmt.Sprintf("MIG (%d instances", len(d.MIGInstances))
		if d.MIGManaged {
			m += ", managed"
		}
		parts = append(parts, m+")")
	} else if d.SharingEnforced {
		parts = append(parts, "shares enforced (MPS)")
	}
	health := "healthy"
	if d.Unhealthy {
		health = "UNHEALTHY: " + d.HealthReason
	}
	return fmt.Sprintf("%d  %s  %s  %s  %s", d.Index, d.UUID, d.Model, strings.Join(parts, ", "), health)
}
