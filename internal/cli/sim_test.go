package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimCommand runs `gantry sim` on a two-node trace through the cobra
// wrapper and reads its JSON summary.
func TestSimCommand(t *testing.T) {
	dir := t.TempDir()
	nodes := filepath.Join(dir, "nodes.csv")
	pods := filepath.Join(dir, "openb_pod_list_tiny.csv")
	os.WriteFile(nodes, []byte("sn,cpu_milli,memory_mib,gpu,model\nn1,32000,65536,2,T4\nn2,32000,65536,2,T4\n"), 0o644)
	os.WriteFile(pods, []byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,4000,1024,1,1000\np2,4000,1024,1,500\np3,4000,1024,0,0\np4,4000,1024,1,500\n"), 0o644)
	var out, errw bytes.Buffer
	cmd := newSimCmd(&out, &errw)
	cmd.SetArgs([]string{"--nodes", nodes, "--pods", pods, "--policy", "fgd,gantry", "--seeds", "1-2", "--json", "--out", filepath.Join(dir, "out")})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	var sum struct {
		Runs []struct {
			Policy        string
			Variant       string
			GPUAllocAt100 struct{ Mean float64 } `json:"gpu_alloc_at_100"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(sum.Runs) != 2 || sum.Runs[0].Variant != "tiny" {
		t.Fatalf("summary %+v", sum)
	}
	if !strings.Contains(errw.String(), "[4/4]") {
		t.Fatalf("no progress on stderr: %s", errw.String())
	}
	for _, f := range []string{"analysis_allo_discrete.csv", "analysis_frag_ratio_discrete.csv", "alloc_tiny.svg", "summary.json", "table.md"} {
		if _, err := os.Stat(filepath.Join(dir, "out", f)); err != nil {
			t.Error(err)
		}
	}
}

// TestSimPodsResolvedAgainstTraceDir (issue 15): the help's first example,
// --pods openb_pod_list_default.csv, failed unless run inside the trace
// folder; pod and node lists are found in --trace-dir.
func TestSimPodsResolvedAgainstTraceDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "openb_node_list_gpu_node.csv"), []byte("sn,cpu_milli,memory_mib,gpu,model\nn1,32000,65536,2,T4\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "openb_pod_list_tiny.csv"), []byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,4000,1024,1,1000\n"), 0o644)
	t.Chdir(t.TempDir()) // anywhere but the trace folder
	var out, errw bytes.Buffer
	cmd := newSimCmd(&out, &errw)
	cmd.SetArgs([]string{"--trace-dir", dir, "--pods", "openb_pod_list_tiny.csv", "--policy", "fgd", "--seeds", "1", "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	if !strings.Contains(out.String(), `"tiny"`) {
		t.Fatalf("summary: %s", out.String())
	}
}
