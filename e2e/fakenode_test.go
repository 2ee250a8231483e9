package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/google/uuid"
)

// FakeNode is a node that speaks the agent protocol from the test: it
// registers a fingerprint the test writes (GPUs with MIG, an unhealthy
// one), heartbeats with usage samples, and reports the allocations placed
// on it running and healthy, as an agent with the null driver would. It
// is how the UI's GPU map is tested on a machine without GPUs.
type FakeNode struct {
	t      testing.TB
	c      *Cluster
	Node   api.Node
	cancel context.CancelFunc
	done   sync.WaitGroup
	// unhealthy: allocations started from now on run, but their health
	// checks fail (FailHealthChecks).
	unhealthy atomic.Bool
}

// FailHealthChecks makes the allocations the node starts from now on
// report running but unhealthy, as tasks whose health check fails on
// this node would; those already running stay healthy.
func (f *FakeNode) FailHealthChecks(yes bool) { f.unhealthy.Store(yes) }

// A100 is a fake A100-SXM4-40GB with the given index.
func A100(node string, i int) api.GPUDevice {
	return api.GPUDevice{
		UUID: fmt.Sprintf("GPU-%s-%d", node, i), Index: i, Model: "NVIDIA A100-SXM4-40GB", Memory: 40960,
		ComputeCapability: "8.0", PCIBusID: fmt.Sprintf("00000000:%02X:00.0", 7+i*16), NUMANode: i / 4,
	}
}

// StartFakeNode registers n (ID and name required) and keeps it alive
// until the test ends.
func StartFakeNode(t testing.TB, c *Cluster, n api.Node) *FakeNode {
	t.Helper()
	if n.Drivers == nil {
		n.Drivers = map[string]api.DriverInfo{api.DriverNull: {Detected: true, Healthy: true, Version: "1", Isolation: "none: tasks are pretended"}}
	}
	if n.ID == "" {
		n.ID = uuid.NewString()
	}
	if n.Address == "" {
		n.Address = "127.0.0.1"
	}
	f := &FakeNode{t: t, c: c, Node: n}
	var resp api.NodeRegisterResponse
	if err := f.call(context.Background(), http.MethodPost, "/v1/nodes/register", &n, &resp); err != nil {
		t.Fatalf("register fake node %s: %v", n.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.done.Add(2)
	go f.heartbeats(ctx)
	go f.runAllocs(ctx)
	t.Cleanup(f.Stop)
	return f
}

// Stop ends the heartbeats: the node goes down once its lease expires.
func (f *FakeNode) Stop() {
	f.cancel()
	f.done.Wait()
}

func (f *FakeNode) call(ctx context.Context, method, path string, body, out any) error {
	if err := f.c.api.Do(ctx, method, path, body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// sample is a made-up but steady reading: GPUs busy in proportion to
// their index and to what is placed on them.
func (f *FakeNode) sample(tick int, allocs []*api.Allocation) *api.NodeSample {
	now := time.Now().UTC()
	s := &api.NodeSample{Time: now, CPUTotal: f.Node.Resources.CPU, CPUUsed: f.Node.Resources.CPU/5 + (tick%7)*500,
		MemoryTotal: f.Node.Resources.Memory, MemoryUsed: f.Node.Resources.Memory/3 + (tick%5)*1024,
		DiskTotal: f.Node.Resources.Disk, DiskUsed: f.Node.Resources.Disk / 4}
	held := map[string]int{}
	for _, a := range allocs {
		if a.ClientTerminal() || a.DesiredStatus != api.AllocDesiredRun {
			continue
		}
		for task, r := range a.Resources {
			if r.GPU != nil {
				for _, u := range gpuOf(r.GPU) {
					held[u]++
				}
			}
			cpu := 100 + (tick%4)*50
			s.Allocs = append(s.Allocs, api.AllocSample{Alloc: a.ID, Task: task, CPUUsed: &cpu, MemoryBytes: int64(r.Memory) << 19})
		}
	}
	for _, g := range f.Node.GPUs {
		gs := api.GPUSample{UUID: g.UUID, MemoryTotal: g.Memory, MemoryUsed: held[g.UUID] * 6000}
		if !g.MIGEnabled {
			u := float64(held[g.UUID]*35 + (tick+g.Index)%10)
			gs.Util = &u
		}
		p, temp := 60.0+float64(held[g.UUID]*80), 33.0+float64(held[g.UUID]*9)
		gs.Power, gs.Temp = &p, &temp
		s.GPUs = append(s.GPUs, gs)
	}
	return s
}

func gpuOf(g *api.AllocatedGPU) []string {
	switch {
	case g.MIG != nil:
		return []string{g.MIG.GPU}
	case g.Share != nil:
		return []string{g.Share.GPU}
	}
	return g.Devices
}

func (f *FakeNode) allocs(ctx context.Context) []*api.Allocation {
	var resp api.NodeAllocsResponse
	if f.call(ctx, http.MethodGet, "/v1/nodes/"+f.Node.ID+"/allocations?wait=1s", nil, &resp) != nil {
		return nil
	}
	return resp.Allocs
}

func (f *FakeNode) heartbeats(ctx context.Context) {
	defer f.done.Done()
	for tick := 0; ctx.Err() == nil; tick++ {
		req := api.HeartbeatRequest{Sample: f.sample(tick, f.allocs(ctx))}
		if err := f.call(ctx, http.MethodPut, "/v1/nodes/"+f.Node.ID+"/heartbeat", &req, nil); err != nil && ctx.Err() == nil {
			f.t.Logf("fake node %s heartbeat: %v", f.Node.Name, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runAllocs follows the node's allocations (the agent's blocking query)
// and reports each running and healthy (unhealthy after
// FailHealthChecks), or complete once stopped.
func (f *FakeNode) runAllocs(ctx context.Context) {
	defer f.done.Done()
	var index int64
	for ctx.Err() == nil {
		var resp api.NodeAllocsResponse
		if err := f.call(ctx, http.MethodGet, fmt.Sprintf("/v1/nodes/%s/allocations?index=%d&wait=5s", f.Node.ID, index), nil, &resp); err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		index = resp.Index
		var ups []api.AllocUpdate
		for _, a := range resp.Allocs {
			switch {
			case a.DesiredStatus == api.AllocDesiredRun && a.ClientStatus == api.AllocPending:
				health := api.HealthHealthy
				if f.unhealthy.Load() {
					health = api.HealthUnhealthy
				}
				u := api.AllocUpdate{ID: a.ID, ClientStatus: api.AllocRunning, Health: health, TaskStates: map[string]*api.TaskState{}}
				for task, r := range a.Resources {
					ts := &api.TaskState{State: api.TaskRunning, Health: health, StartedAt: time.Now().UTC()}
					ts.AddEvent(api.TaskEvent{Time: time.Now().UTC(), Type: api.TaskEventStarted, Message: "pretend task started by the test's fake agent"})
					u.TaskStates[task] = ts
					if r.GPU != nil && r.GPU.MIG != nil && r.GPU.MIG.InstanceUUID == "" {
						if u.MIGInstances == nil {
							u.MIGInstances = map[string]string{}
						}
						u.MIGInstances[task] = fmt.Sprintf("MIG-%s-%d", r.GPU.MIG.GPU, r.GPU.MIG.Start)
					}
				}
				ups = append(ups, u)
			case a.DesiredStatus == api.AllocDesiredStop && !a.ClientTerminal():
				ups = append(ups, api.AllocUpdate{ID: a.ID, ClientStatus: api.AllocComplete})
			}
		}
		if len(ups) > 0 {
			if err := f.call(ctx, http.MethodPost, "/v1/nodes/"+f.Node.ID+"/allocations", &api.AllocUpdateRequest{Updates: ups}, nil); err != nil && ctx.Err() == nil {
				f.t.Logf("fake node %s alloc update: %v", f.Node.Name, err)
			}
		}
	}
}
