package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Report {
	t0 := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	docker := NewFigure("startup/docker/healthy", "ms", LowerIsBetter, []float64{700, 720, 710})
	docker.Baseline = "startup/docker-direct/healthy"
	docker.Chart = &Chart{ID: "startup/healthy", Kind: "cdf", Title: "healthy"}
	direct := NewFigure("startup/docker-direct/healthy", "ms", LowerIsBetter, []float64{350, 360, 355})
	return &Report{
		Schema: Schema, Started: t0, Finished: t0.Add(90 * time.Second), Command: "gantry bench run --quick", Quick: true,
		Machine: Machine{CPUModel: "AMD EPYC", CPUs: 2, MemoryMiB: 24064, Kernel: "6.1", GoVersion: "go1.26.8", GantryVersion: "dev", GantryCommit: "0123456789abcdef0123"},
		Suites: []Suite{
			{Name: "startup", Status: StatusOK, Target: "loopback", Seconds: 12, Figures: []Figure{docker, direct}, Notes: []string{"3 replicas"}},
			{Name: "proxy", Status: StatusSkipped, Reason: "nginx is not installed", Target: "loopback"},
		},
	}
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.json")
	want := sample()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v\nwant %+v", got, want)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		schema           bool
	}{
		{"not JSON", "report", "not a JSON benchmark report", false},
		{"no schema", `{"suites": []}`, `no "schema" field`, true},
		{"another schema", `{"schema": "gantry-bench/2"}`, `written with report schema "gantry-bench/2"`, true},
		{"wrong types", `{"schema": "gantry-bench/1", "suites": "x"}`, "does not match schema", false},
		{"repeated figure", `{"schema": "gantry-bench/1", "suites": [{"name": "a", "figures": [{"name": "a/x"}, {"name": "a/x"}]}]}`, `"a/x" is empty or repeated`, true},
	} {
		_, err := Decode("r.json", []byte(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if tc.schema != errors.Is(err, ErrSchema) {
			t.Errorf("%s: errors.Is(ErrSchema) = %v", tc.name, !tc.schema)
		}
	}
}

func TestMarkdown(t *testing.T) {
	r := sample()
	r.Partial, r.PartialReason = true, "suite failover interrupted"
	var b bytes.Buffer
	if err := Markdown(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Gantry benchmark report (quick), 2026-12-06 20:00 UTC, 1m30s",
		"Machine: 2 × AMD EPYC, 23.5 GiB, Linux 6.1, go1.26.8, gantry dev (0123456789ab)",
		"**Partial report**: suite failover interrupted",
		"| startup/docker/healthy | ms | 3 | 710.0 | 718.0 | 719.8 | 700.0 | 720.0 | startup/docker-direct/healthy (2.00×) |",
		"| proxy | skipped: nginx is not installed |",
		"- startup: 3 replicas",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, b.String())
		}
	}
}

func TestHTML(t *testing.T) {
	var b bytes.Buffer
	if err := HTML(&b, sample(), []ChartSVG{{ID: "startup/healthy", Title: "healthy <latency>", SVG: "<svg></svg>"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<h2 id="startup">startup</h2>`, `<figure id="chart-startup/healthy"><svg></svg><figcaption>healthy &lt;latency&gt;</figcaption>`, "skipped: nginx is not installed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1234567: "1,234,567", -2500: "-2,500", 123.45: "123.5", 1.234: "1.23", 0.01234: "0.0123"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%v) = %q, want %q", v, got, want)
		}
	}
}

// FuzzDecode: any bytes give a report or an error, never a panic, and a
// report that decodes encodes and decodes to the same figures.
func FuzzDecode(f *testing.F) {
	var b bytes.Buffer
	path := filepath.Join(f.TempDir(), "r.json")
	if err := Write(path, sample()); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(path)
	f.Add(seed)
	f.Add([]byte(`{"schema": "gantry-bench/1", "suites": [{"figures": [{"name": "x", "samples": [1e308, -0]}]}]}`))
	f.Add([]byte(`{"schema": null}`))
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode("fuzz", data)
		if err != nil {
			return
		}
		var md bytes.Buffer
		if err := Markdown(&md, r); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "r.json")
		if err := Write(out, r); err != nil {
			return // NaN or infinite samples do not encode as JSON
		}
		again, err := Read(out)
		if err != nil {
			t.Fatalf("a decoded report does not read back: %v", err)
		}
		if len(again.Figures()) != len(r.Figures()) {
			t.Fatalf("%d figures read back, want %d", len(again.Figures()), len(r.Figures()))
		}
	})
}

func TestShortCommit(t *testing.T) {
	for in, want := range map[string]string{"0123456789abcdef": "0123456789ab", "0123456789abcdef+modified": "0123456789ab+modified", "abc": "abc"} {
		if got := shortCommit(in); got != want {
			t.Errorf("shortCommit(%q) = %q, want %q", in, got, want)
		}
	}
}
