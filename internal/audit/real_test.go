package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// hostDecided are the checks whose verdict on a clean container depends on
// the engine alone (a missing kernel mechanism); only these may fail on the
// clean baseline, and then only because of the host.
var hostDecided = map[string]bool{"5.2": true, "5.11": true, "5.22": true, "5.29": true}

// reportTime stamps the test reports; the package never reads the clock.
var reportTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestRealContainers starts every scenario as a real container on the local
// engine, audits the engine with the Collector, and checks that each
// container fails exactly the checks its setting offends, while the clean
// baseline (the same container with the setting removed) fails none of
// them. With -record it also writes the fixtures under testdata/fixtures.
func TestRealContainers(t *testing.T) {
	cli := dockerClient(t)
	ensureImage(t, cli)
	ctx := context.Background()
	runID := newRunID(t)

	inf, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatalf("engine info: %v", err)
	}
	engine := &Engine{Info: inf.Info}
	t.Logf("engine %s, security options: %s", inf.Info.ServerVersion, engine.securityOptions())

	ids := map[string]string{}
	notStarted := map[string]string{}
	for _, s := range scenarios {
		cfg, hc := baseline(s.name, runID)
		dir, why := "", s.createOnly
		if s.sharedDir {
			dir = t.TempDir()
			if undo, err := makeShared(dir); err != nil {
				why = fmt.Sprintf("no shared mount point could be made here (%v)", err)
			} else {
				t.Cleanup(undo)
			}
		}
		s.mutate(cfg, hc, dir)
		res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: "gantry-audit-" + runID + "-" + s.name, Config: cfg, HostConfig: hc,
		})
		if err != nil {
			t.Fatalf("%s: create: %v", s.name, err)
		}
		id := res.ID
		t.Cleanup(func() { removeContainer(t, cli, id) })
		ids[s.name] = id
		if why == "" {
			if err := startContainer(ctx, cli, id); err != nil {
				if !s.sharedDir {
					t.Fatalf("%s: start: %v", s.name, err)
				}
				why = fmt.Sprintf("the engine refused to start it: %v", err)
			}
		}
		if why != "" {
			notStarted[s.name] = why
		}
	}

	col := &Collector{Docker: cli, Node: "test-node"}
	rep, err := col.Collect(ctx, reportTime)
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	if !rep.Time.Equal(reportTime) || rep.Node != "test-node" {
		t.Errorf("report stamped %s %v, want test-node %v", rep.Node, rep.Time, reportTime)
	}
	byID := map[string][]Finding{}
	for _, f := range rep.Findings {
		byID[f.ContainerID] = append(byID[f.ContainerID], f)
	}

	cleanFails := failing(byID[ids["clean"]])
	for id := range cleanFails {
		if !hostDecided[id] {
			t.Errorf("clean container fails %s: %s", id, detailOf(byID[ids["clean"]], id))
		} else {
			t.Logf("clean container fails %s because of the host: %s", id, detailOf(byID[ids["clean"]], id))
		}
	}

	exercised := map[string]string{} // check → "running" or "created"
	_, hasAppArmor := engine.securityOption("apparmor")
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			fs := byID[ids[s.name]]
			if len(fs) != len(containerChecks) {
				t.Fatalf("report holds %d findings for the container, want %d", len(fs), len(containerChecks))
			}
			for _, f := range fs {
				if f.Namespace != testNS || f.Job != s.name || f.Task != "main" || f.Alloc != runID+"-"+s.name {
					t.Fatalf("finding %s carries labels %s/%s/%s/%s", f.CheckID, f.Namespace, f.Job, f.Alloc, f.Task)
				}
			}
			want := s.wanted(engine)
			got := failing(fs)
			wantSet := map[string]bool{}
			for _, id := range want {
				wantSet[id] = true
				if cleanFails[id] {
					t.Errorf("%s also fails on the clean container, so it does not tell the setting apart", id)
				}
				state := "running"
				if why, ok := notStarted[s.name]; ok {
					state = "created only: " + why
				}
				if _, seen := exercised[id]; !seen || state == "running" {
					exercised[id] = state
				}
			}
			for id := range cleanFails {
				wantSet[id] = true
			}
			if !sameSet(got, wantSet) {
				t.Errorf("fails %v, want %v", keys(got), keys(wantSet))
				for _, f := range fs {
					t.Logf("  %s %s: %s", f.CheckID, f.Status, f.Detail)
				}
			}
			for _, id := range want {
				t.Logf("%s %s", id, detailOf(fs, id))
			}
			if why, ok := notStarted[s.name]; ok {
				t.Logf("created, not started: %s", why)
			}
			if !hasAppArmor {
				f := findingOf(fs, "5.2")
				if f.Status != StatusInfo || !strings.Contains(f.Detail, "reports no AppArmor support") {
					t.Errorf("5.2 on an engine without AppArmor: %s %q, want info stating the host condition", f.Status, f.Detail)
				}
			}
		})
	}

	var lines []string
	for _, c := range containerChecks {
		state, ok := exercised[c.ID]
		if !ok {
			state = "not exercised on this engine"
		}
		lines = append(lines, fmt.Sprintf("%-5s %s", c.ID, state))
	}
	t.Logf("checks exercised with real containers:\n%s", strings.Join(lines, "\n"))

	if *record {
		recordFixtures(t, cli, ids, inf.Info)
	}
}

// recordFixtures writes each scenario's `docker inspect` (as the engine
// sent it) and the engine's info under testdata/fixtures.
func recordFixtures(t *testing.T, cli *client.Client, ids map[string]string, inf any) {
	t.Helper()
	dir := filepath.Join("testdata", "fixtures")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, id := range ids {
		res, err := cli.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("inspect %s: %v", name, err)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, res.Raw, "", "  "); err != nil {
			t.Fatal(err)
		}
		buf.WriteByte('\n')
		if err := os.WriteFile(filepath.Join(dir, name+".json"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.MarshalIndent(inf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, engineFixture), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d fixtures and the engine's info under %s", len(ids), dir)
}

func failing(fs []Finding) map[string]bool {
	out := map[string]bool{}
	for _, f := range fs {
		if f.Failed() {
			out[f.CheckID] = true
		}
	}
	return out
}

func findingOf(fs []Finding, id string) Finding {
	for _, f := range fs {
		if f.CheckID == id {
			return f
		}
	}
	return Finding{}
}

func detailOf(fs []Finding, id string) string {
	f := findingOf(fs, id)
	return fmt.Sprintf("%s (%s) %s", f.Status, f.Severity, f.Detail)
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i], out[j]) })
	return slices.Clip(out)
}
