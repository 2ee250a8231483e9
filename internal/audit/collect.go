package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// DockerAPI is the part of the Docker client the collector uses: it only
// reads. *client.Client implements it.
type DockerAPI interface {
	Info(ctx context.Context, opts client.InfoOptions) (client.SystemInfoResult, error)
	ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, opts client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Collector audits every container on one engine: Gantry's and any other,
// running or not. The agent calls Collect at start and then periodically.
type Collector struct {
	Docker DockerAPI
	// Node names the node in reports.
	Node string
	// Daemon holds the daemon settings the engine API does not report
	// (read from daemon.json by the caller, see ParseDaemonConfig); nil
	// when they are not known, and the checks that need them say so.
	Daemon *DaemonConfig
	// Allocations, when set, is what the node's agent runs (see
	// Engine.Allocations).
	Allocations Allocations
	// Host is the engine's address as the client reaches it
	// ("unix:///var/run/docker.sock"). A unix socket means the engine runs
	// on this machine: its socket joins Engine.Sockets, and mount sources
	// and devices are resolved here (ResolveHostPaths).
	Host string
}

// Collect reads the engine's info, lists and inspects every container and
// returns the audit, stamped with at (the caller's clock). A container
// removed between the listing and its inspection is skipped: it no longer
// runs anything to audit.
func (c *Collector) Collect(ctx context.Context, at time.Time) (Report, error) {
	inf, err := c.Docker.Info(ctx, client.InfoOptions{})
	if err != nil {
		return Report{}, fmt.Errorf("audit: read engine info: %w", err)
	}
	list, err := c.Docker.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return Report{}, fmt.Errorf("audit: list containers: %w", err)
	}
	inspected := make([]container.InspectResponse, 0, len(list.Items))
	for _, s := range list.Items {
		res, err := c.Docker.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return Report{}, fmt.Errorf("audit: inspect container %s: %w", s.ID, err)
		}
		inspected = append(inspected, res.Container)
	}
	e := &Engine{Info: inf.Info, Daemon: c.Daemon, Allocations: c.Allocations}
	if sock, ok := strings.CutPrefix(c.Host, "unix://"); ok {
		e.Sockets = []string{sock}
		paths := []string{sock}
		for _, ic := range inspected {
			paths = append(paths, HostPathsOf(ic)...)
		}
		e.HostPaths = ResolveHostPaths(paths)
	}
	return NewReport(c.Node, at, e, inspected), nil
}

// ResolveHostPaths resolves the symlinks of each absolute path on this
// machine, for Engine.HostPaths. A path that does not exist (yet) is
// resolved as far as it exists: its longest existing parent, with the
// rest appended. Paths that resolve to themselves are left out.
func ResolveHostPaths(paths []string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			continue
		}
		if r := resolveHostPath(p); r != filepath.Clean(p) {
			out[p] = r
		}
	}
	return out
}

func resolveHostPath(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(r, rest)
		}
		if !errors.Is(err, os.ErrNotExist) || p == "/" {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = filepath.Dir(p)
	}
}
