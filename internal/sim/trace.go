package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Node is one machine of a node list (openb_node_list_*.csv).
type Node struct {
	Name   string
	CPU    int    // millicores
	Memory int    // MiB
	GPUs   int    //
	Model  string // GPU model; empty for a node without GPUs
}

// Task is one row of a pod list (openb_pod_list_*.csv).
type Task struct {
	Name   string
	CPU    int    // millicores
	Memory int    // MiB
	GPUs   int    // 0, or the number of GPUs
	Milli  int    // per GPU: below 1000 only for a share of one GPU; 0 without GPUs
	Model  string // allowed GPU models separated by "|"; empty: any
}

// GPUMilli is the task's GPU demand in thousandths of a GPU.
func (t *Task) GPUMilli() int { return t.GPUs * t.Milli }

// ErrTrace is wrapped by every error about the content of a trace file.
var ErrTrace = errors.New("bad trace file")

// table reads a CSV with a header and hands each row to fn with a lookup
// of the required columns (optional ones may be absent: index -1).
func table(r io.Reader, required, optional []string, fn func(line int, get func(col string) string) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return fmt.Errorf("%w: empty file, expected a header with %s", ErrTrace, strings.Join(required, ","))
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTrace, err)
	}
	idx := map[string]int{}
	for i, h := range head {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := idx[h]; !dup {
			idx[h] = i
		}
	}
	cols := map[string]int{}
	for _, c := range required {
		i, ok := idx[c]
		if !ok {
			return fmt.Errorf("%w: header lacks column %q (has %s)", ErrTrace, c, strings.Join(head, ","))
		}
		cols[c] = i
	}
	for _, c := range optional {
		if i, ok := idx[c]; ok {
			cols[c] = i
		} else {
			cols[c] = -1
		}
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTrace, err)
		}
		line, _ := cr.FieldPos(0)
		get := func(col string) string {
			i := cols[col]
			if i < 0 || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		if err := fn(line, get); err != nil {
			return err
		}
	}
}

// number parses a non-negative integer field (a float with no fraction,
// as pandas writes them, is accepted).
func number(line int, col, s string) (int, error) {
	if v, err := strconv.Atoi(s); err == nil && v >= 0 {
		return v, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f <= 1<<40 && f == float64(int64(f)) {
		return int(f), nil
	}
	return 0, fmt.Errorf("%w: line %d: %s %q is not a non-negative integer", ErrTrace, line, col, s)
}

// model normalises a model field: "nan" and empty mean none.
func model(s string) string {
	if strings.EqualFold(s, "nan") || strings.EqualFold(s, "none") {
		return ""
	}
	return s
}

// ParseNodes reads a node list: columns sn, cpu_milli, memory_mib, gpu,
// model (others are ignored).
func ParseNodes(r io.Reader) ([]Node, error) {
	var out []Node
	seen := map[string]int{}
	err := table(r, []string{"sn", "cpu_milli", "memory_mib", "gpu"}, []string{"model"}, func(line int, get func(string) string) error {
		n := Node{Name: get("sn"), Model: model(get("model"))}
		if n.Name == "" {
			return fmt.Errorf("%w: line %d: empty node name (sn)", ErrTrace, line)
		}
		if prev, dup := seen[n.Name]; dup {
			return fmt.Errorf("%w: line %d: node %s already listed on line %d", ErrTrace, line, n.Name, prev)
		}
		seen[n.Name] = line
		var err error
		if n.CPU, err = number(line, "cpu_milli", get("cpu_milli")); err != nil {
			return err
		}
		if n.Memory, err = number(line, "memory_mib", get("memory_mib")); err != nil {
			return err
		}
		if n.GPUs, err = number(line, "gpu", get("gpu")); err != nil {
			return err
		}
		if n.GPUs > 64 {
			return fmt.Errorf("%w: line %d: %d GPUs on one node (at most 64)", ErrTrace, line, n.GPUs)
		}
		if n.GPUs > 0 && n.Model == "" {
			return fmt.Errorf("%w: line %d: node %s has %d GPUs but no model", ErrTrace, line, n.Name, n.GPUs)
		}
		if n.GPUs == 0 {
			n.Model = ""
		}
		out = append(out, n)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: no nodes", ErrTrace)
	}
	return out, err
}

// ParseTasks reads a pod list: columns name, cpu_milli, memory_mib,
// num_gpu, gpu_milli and, when present, gpu_spec (the multigpu lists have
// only the first five). Other columns (qos, times) are ignored: tasks only
// arrive.
func ParseTasks(r io.Reader) ([]Task, error) {
	var out []Task
	err := table(r, []string{"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"}, []string{"gpu_spec"}, func(line int, get func(string) string) error {
		t := Task{Name: get("name"), Model: model(get("gpu_spec"))}
		if t.Name == "" {
			return fmt.Errorf("%w: line %d: empty task name", ErrTrace, line)
		}
		var err error
		if t.CPU, err = number(line, "cpu_milli", get("cpu_milli")); err != nil {
			return err
		}
		if t.Memory, err = number(line, "memory_mib", get("memory_mib")); err != nil {
			return err
		}
		if t.GPUs, err = number(line, "num_gpu", get("num_gpu")); err != nil {
			return err
		}
		if t.Milli, err = number(line, "gpu_milli", get("gpu_milli")); err != nil {
			return err
		}
		switch {
		case t.GPUs > 64:
			return fmt.Errorf("%w: line %d: task %s asks for %d GPUs (at most 64)", ErrTrace, line, t.Name, t.GPUs)
		case t.GPUs == 0 && t.Milli != 0:
			return fmt.Errorf("%w: line %d: task %s has gpu_milli %d but num_gpu 0", ErrTrace, line, t.Name, t.Milli)
		case t.GPUs > 0 && (t.Milli == 0 || t.Milli > 1000):
			return fmt.Errorf("%w: line %d: task %s: gpu_milli %d must be 1..1000", ErrTrace, line, t.Name, t.Milli)
		case t.GPUs > 1 && t.Milli != 1000:
			return fmt.Errorf("%w: line %d: task %s shares %d milli of each of %d GPUs; shares are of one GPU", ErrTrace, line, t.Name, t.Milli, t.GPUs)
		case t.GPUs == 0:
			t.Model = ""
		}
		for _, alt := range strings.Split(t.Model, "|") {
			if strings.ContainsAny(alt, "*?") {
				return fmt.Errorf("%w: line %d: task %s: gpu_spec %q: model names only, no patterns", ErrTrace, line, t.Name, t.Model)
			}
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// LoadNodes reads a node list file.
func LoadNodes(path string) ([]Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nodes, err := ParseNodes(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nodes, nil
}

// LoadTasks reads a pod list file.
func LoadTasks(path string) ([]Task, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tasks, err := ParseTasks(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tasks, nil
}
