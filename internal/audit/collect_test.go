package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"
)

// fakeDocker serves a fixed engine: its info, its containers, and errors
// to inject.
type fakeDocker struct {
	info       system.Info
	infoErr    error
	containers map[string]container.InspectResponse
	listed     []string // IDs the listing returns, in order
	inspectErr map[string]error
	listOpts   client.ContainerListOptions
}

func (f *fakeDocker) Info(context.Context, client.InfoOptions) (client.SystemInfoResult, error) {
	return client.SystemInfoResult{Info: f.info}, f.infoErr
}

func (f *fakeDocker) ContainerList(_ context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error) {
	f.listOpts = opts
	var out client.ContainerListResult
	for _, id := range f.listed {
		out.Items = append(out.Items, container.Summary{ID: id})
	}
	return out, nil
}

func (f *fakeDocker) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	if err := f.inspectErr[id]; err != nil {
		return client.ContainerInspectResult{}, err
	}
	return client.ContainerInspectResult{Container: f.containers[id]}, nil
}

func TestCollector(t *testing.T) {
	mk := func(id, name string) container.InspectResponse {
		return inspect(func(c *container.InspectResponse) { c.ID, c.Name = id, "/"+name })
	}
	fd := &fakeDocker{
		info:       engPlain.Info,
		containers: map[string]container.InspectResponse{"a": mk("a", "gantry-web"), "c": mk("c", "someone-elses")},
		listed:     []string{"a", "gone", "c"},
		inspectErr: map[string]error{"gone": cerrdefs.ErrNotFound},
	}
	col := &Collector{Docker: fd, Node: "node-7", Daemon: &DaemonConfig{NoNewPrivileges: yes()}}
	r, err := col.Collect(context.Background(), reportTime)
	if err != nil {
		t.Fatal(err)
	}
	if !fd.listOpts.All {
		t.Error("the collector must list stopped containers too")
	}
	if r.Node != "node-7" || !r.Time.Equal(reportTime) || r.Containers != 2 || r.EngineVersion != engPlain.Info.ServerVersion {
		t.Errorf("report header %s %v %d %s", r.Node, r.Time, r.Containers, r.EngineVersion)
	}
	if len(r.Findings) != 2*len(containerChecks) || len(r.Engine) != len(engineChecks) {
		t.Errorf("%d findings, %d engine findings", len(r.Findings), len(r.Engine))
	}
	// The daemon settings reach the checks that need them.
	for _, f := range r.Engine {
		if f.CheckID == "2.14" && f.Status != StatusPass {
			t.Errorf("2.14 with the daemon's configuration: %s %s", f.Status, f.Detail)
		}
	}

	fd.inspectErr["gone"] = errors.New("connection reset")
	if _, err := col.Collect(context.Background(), reportTime); err == nil || !strings.Contains(err.Error(), "inspect container gone") {
		t.Errorf("inspect failure: %v", err)
	}
	fd.infoErr = errors.New("daemon down")
	if _, err := col.Collect(context.Background(), reportTime); err == nil || !strings.Contains(err.Error(), "read engine info: daemon down") {
		t.Errorf("info failure: %v", err)
	}
}

// TestResolveHostPaths: a bind-mount source that is a symlink, or lies
// under one, or does not exist yet under one, is resolved to where it
// leads on the host; a plain path is left out.
func TestResolveHostPaths(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	realDir, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	got := ResolveHostPaths([]string{link, link + "/sub/missing", realDir, "relative"})
	want := map[string]string{link: realDir, link + "/sub/missing": realDir + "/sub/missing"}
	if len(got) != len(want) {
		t.Fatalf("resolved %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s resolved to %q, want %q", k, got[k], v)
		}
	}
}
