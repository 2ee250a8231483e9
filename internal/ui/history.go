package ui

import (
	"fmt"
	"math"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
)

func gpuName(uuid string, devices []api.GPUDevice) string {
	for _, d := range devices {
		if d.UUID == uuid {
			return fmt.Sprintf("GPU %d", d.Index)
		}
	}
	return "GPU " + api.ShortID(uuid)
}

// gpuCharts draws utilisation and memory of each GPU that appears in the
// readings, in the order they first appear.
func gpuCharts(prefix string, times []api.NodeSample, devices []api.GPUDevice) []Chart {
	var order []string
	seen := map[string]bool{}
	top := 0.0
	for _, s := range times {
		for _, g := range s.GPUs {
			if !seen[g.UUID] {
				seen[g.UUID] = true
				order = append(order, g.UUID)
			}
			top = math.Max(top, float64(g.MemoryTotal)/1024)
		}
	}
	if len(order) == 0 {
		return nil
	}
	util := Chart{ID: prefix + "-gpu-util", Title: "GPU utilisation", Unit: "%", Max: 100}
	mem := Chart{ID: prefix + "-gpu-mem", Title: "GPU memory", Unit: "GiB", Max: top}
	for _, u := range order {
		su, sm := Series{Name: gpuName(u, devices)}, Series{Name: gpuName(u, devices)}
		for _, s := range times {
			vu, vm := math.NaN(), math.NaN()
			for _, g := range s.GPUs {
				if g.UUID == u {
					if g.Util != nil {
						vu = *g.Util
					}
					vm = float64(g.MemoryUsed) / 1024
				}
			}
			su.Points = append(su.Points, Point{s.Time, vu})
			sm.Points = append(sm.Points, Point{s.Time, vm})
		}
		util.Series = append(util.Series, su)
		mem.Series = append(mem.Series, sm)
	}
	return []Chart{util, mem}
}

// NodeCharts draws a node's history: CPU, memory and disk in use, and
// each GPU's utilisation and memory.
func NodeCharts(samples []api.NodeSample, devices []api.GPUDevice) []Chart {
	if len(samples) == 0 {
		return nil
	}
	last := samples[len(samples)-1]
	cpu := Chart{ID: "node-cpu", Title: "CPU busy", Unit: "cores", Max: float64(last.CPUTotal) / 1000}
	mem := Chart{ID: "node-mem", Title: "Memory in use", Unit: "GiB", Max: float64(last.MemoryTotal) / 1024}
	disk := Chart{ID: "node-disk", Title: "Disk in use", Unit: "GiB", Max: float64(last.DiskTotal) / 1024}
	sc, sm, sd := Series{Name: "busy"}, Series{Name: "in use"}, Series{Name: "in use"}
	for _, s := range samples {
		sc.Points = append(sc.Points, Point{s.Time, float64(s.CPUUsed) / 1000})
		sm.Points = append(sm.Points, Point{s.Time, float64(s.MemoryUsed) / 1024})
		sd.Points = append(sd.Points, Point{s.Time, float64(s.DiskUsed) / 1024})
	}
	cpu.Series, mem.Series, disk.Series = []Series{sc}, []Series{sm}, []Series{sd}
	return append([]Chart{cpu, mem, disk}, gpuCharts("node", samples, devices)...)
}

// AllocCharts draws an allocation's history: CPU and memory of each of
// its tasks, and the utilisation and memory of the GPUs it holds a part
// of.
func AllocCharts(m api.AllocMetricsResponse, devices []api.GPUDevice) []Chart {
	if len(m.Samples) == 0 {
		return nil
	}
	tasks := map[string]bool{}
	for _, s := range m.Samples {
		for _, t := range s.Tasks {
			tasks[t.Task] = true
		}
	}
	names := sortedKeys(tasks)
	sort.Strings(names)
	cpu := Chart{ID: "alloc-cpu", Title: "CPU", Unit: "cores"}
	mem := Chart{ID: "alloc-mem", Title: "Memory", Unit: "MiB"}
	for _, name := range names {
		sc, sm := Series{Name: name}, Series{Name: name}
		for _, s := range m.Samples {
			vc, vm := math.NaN(), math.NaN()
			for _, t := range s.Tasks {
				if t.Task == name {
					if t.CPUUsed != nil {
						vc = float64(*t.CPUUsed) / 1000
					}
					vm = float64(t.MemoryBytes) / (1 << 20)
				}
			}
			sc.Points = append(sc.Points, Point{s.Time, vc})
			sm.Points = append(sm.Points, Point{s.Time, vm})
		}
		cpu.Series = append(cpu.Series, sc)
		mem.Series = append(mem.Series, sm)
	}
	out := []Chart{cpu, mem}
	gs := make([]api.NodeSample, len(m.Samples))
	for i, s := range m.Samples {
		gs[i] = api.NodeSample{Time: s.Time, GPUs: s.GPUs}
	}
	return append(out, gpuCharts("alloc", gs, devices)...)
}
