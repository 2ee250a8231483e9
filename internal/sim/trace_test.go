package sim

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTasks(t *testing.T) {
	in := `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061
openb-pod-0002,88000,327680,8,1000,V100M16|V100M32,Burstable,Succeeded,1,2,3
openb-pod-0003,4000,8192,0,0,nan,BE,Running,0,1,0
`
	got, err := ParseTasks(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Task{
		{Name: "openb-pod-0000", CPU: 12000, Memory: 16384, GPUs: 1, Milli: 1000},
		{Name: "openb-pod-0001", CPU: 6000, Memory: 12288, GPUs: 1, Milli: 460},
		{Name: "openb-pod-0002", CPU: 88000, Memory: 327680, GPUs: 8, Milli: 1000, Model: "V100M16|V100M32"},
		{Name: "openb-pod-0003", CPU: 4000, Memory: 8192},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tasks, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("task %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[2].GPUMilli() != 8000 || got[1].GPUMilli() != 460 || got[3].GPUMilli() != 0 {
		t.Errorf("GPUMilli: %d %d %d", got[2].GPUMilli(), got[1].GPUMilli(), got[3].GPUMilli())
	}
}

func TestParseTasksFiveColumns(t *testing.T) {
	in := "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nopenb-pod-0000,12000,16384,4,1000\n"
	got, err := ParseTasks(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (Task{Name: "openb-pod-0000", CPU: 12000, Memory: 16384, GPUs: 4, Milli: 1000}) {
		t.Fatalf("got %+v", got)
	}
}

func TestParseErrors(t *testing.T) {
	head := "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"missing column", "name,cpu_milli,memory_mib,num_gpu\n", `lacks column "gpu_milli"`},
		{"negative cpu", head + "p,-1,1,0,0\n", "line 2: cpu_milli"},
		{"text", head + "p,x,1,0,0\n", "not a non-negative integer"},
		{"share of two", head + "p,1,1,2,500\n", "shares are of one GPU"},
		{"milli without gpus", head + "p,1,1,0,500\n", "num_gpu 0"},
		{"gpus without milli", head + "p,1,1,1,0\n", "must be 1..1000"},
		{"too much milli", head + "p,1,1,1,1001\n", "must be 1..1000"},
		{"empty name", head + ",1,1,0,0\n", "empty task name"},
		{"pattern", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np,1,1,1,1000,V100*\n", "no patterns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTasks(strings.NewReader(tc.in))
			if err == nil || !errors.Is(err, ErrTrace) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrTrace containing %q", err, tc.want)
			}
		})
	}
	nodeHead := "sn,cpu_milli,memory_mib,gpu,model\n"
	for _, tc := range []struct{ name, in, want string }{
		{"no nodes", nodeHead, "no nodes"},
		{"gpus without model", nodeHead + "n,1,1,2,nan\n", "no model"},
		{"duplicate", nodeHead + "n,1,1,0,\nn,1,1,0,\n", "already listed on line 2"},
		{"too many gpus", nodeHead + "n,1,1,65,T4\n", "at most 64"},
	} {
		t.Run("nodes "+tc.name, func(t *testing.T) {
			_, err := ParseNodes(strings.NewReader(tc.in))
			if err == nil || !errors.Is(err, ErrTrace) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrTrace containing %q", err, tc.want)
			}
		})
	}
}

func TestParseNodes(t *testing.T) {
	in := "sn,cpu_milli,memory_mib,gpu,model\nopenb-node-0227,32000,262144,0,nan\nopenb-node-0228,128000,786432,8,G3\n"
	got, err := ParseNodes(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{{Name: "openb-node-0227", CPU: 32000, Memory: 262144}, {Name: "openb-node-0228", CPU: 128000, Memory: 786432, GPUs: 8, Model: "G3"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	api, gpus := APINodes(got)
	if gpus != 8 || len(api[1].GPUs) != 8 || api[1].GPUs[7].Model != "G3" || len(api[0].GPUs) != 0 {
		t.Fatalf("APINodes: %d GPUs, %+v", gpus, api[1].GPUs)
	}
}

// FuzzParseTasks feeds arbitrary bytes to the pod list parser: it must
// never panic, and what it accepts must satisfy the task invariants.
func FuzzParseTasks(f *testing.F) {
	f.Add([]byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np,1000,1,1,500,T4\nq,1,1,8,1000,\n"))
	f.Add([]byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,0,0\n"))
	f.Add([]byte("gpu_milli,name,num_gpu,memory_mib,cpu_milli\n1000,\"p,q\",2,3,4.0\n"))
	f.Add([]byte("\ufeffname,cpu_milli,memory_mib,num_gpu,gpu_milli\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tasks, err := ParseTasks(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrTrace) {
				t.Fatalf("error not wrapping ErrTrace: %v", err)
			}
			return
		}
		for _, tk := range tasks {
			switch {
			case tk.Name == "", tk.CPU < 0, tk.Memory < 0, tk.GPUs < 0, tk.GPUs > 64:
				t.Fatalf("accepted %+v", tk)
			case tk.GPUs == 0 && (tk.Milli != 0 || tk.Model != ""):
				t.Fatalf("accepted %+v", tk)
			case tk.GPUs > 0 && (tk.Milli < 1 || tk.Milli > 1000), tk.GPUs > 1 && tk.Milli != 1000:
				t.Fatalf("accepted %+v", tk)
			}
		}
	})
}

// FuzzParseNodes does the same for node lists.
func FuzzParseNodes(f *testing.F) {
	f.Add([]byte("sn,cpu_milli,memory_mib,gpu,model\nn,64000,262144,2,P100\nm,1,1,0,nan\n"))
	f.Add([]byte("model,gpu,sn,memory_mib,cpu_milli\nT4,2,a,1,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		nodes, err := ParseNodes(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrTrace) {
				t.Fatalf("error not wrapping ErrTrace: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, n := range nodes {
			if n.Name == "" || seen[n.Name] || n.CPU < 0 || n.GPUs < 0 || n.GPUs > 64 || (n.GPUs > 0) != (n.Model != "") {
				t.Fatalf("accepted %+v", n)
			}
			seen[n.Name] = true
		}
	})
}
