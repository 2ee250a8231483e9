package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/driver"
)

// TestProbe uses a stand-in qemu-system script (the real binary's version
// output is covered by TestParseVersion and the e2e tests) to check that
// the version is read once per binary, and that a missing binary and an
// unusable KVM device are reported.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	bin := filepath.Join(dir, "qemu-system-x86_64")
	script := "#!/bin/sh\necho run >> " + count + "\necho 'QEMU emulator version 9.1.0 (test)'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := Probe(ctx, bin, filepath.Join(dir, "kvm"), dir, nil)
	if s.QEMU != bin || s.Version != "9.1.0" || s.KVM || !strings.Contains(s.KVMWhy, "cannot be opened read-write") {
		t.Fatalf("probe: %+v", s)
	}
	s2 := Probe(ctx, bin, filepath.Join(dir, "kvm"), dir, &s)
	if s2.Version != "9.1.0" {
		t.Fatalf("second probe: %+v", s2)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 1 {
		t.Errorf("the binary ran %d times for two probes, want 1", strings.Count(string(b), "run"))
	}
	if s := Probe(ctx, filepath.Join(dir, "absent"), "/dev/null", dir, nil); s.QEMU != "" {
		t.Errorf("absent binary found: %+v", s)
	}
	d, err := New(Config{AllocRoot: dir, QEMU: filepath.Join(dir, "absent")})
	if err != nil {
		t.Fatal(err)
	}
	if info := d.Fingerprint(ctx); info.Healthy || !strings.Contains(info.Reason, "not installed") {
		t.Errorf("fingerprint without QEMU: %+v", info)
	}
}

// TestKVMUsable: a device that opens is usable unless the kernel's only
// KVM backend is kvm_pvm, which hangs a stock guest kernel (seen on this
// project's CI machines: /dev/kvm opened, the guest never printed a line).
// /dev/null stands in for a device that opens read-write; a fake
// /sys/module tree holds the loaded modules.
func TestKVMUsable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dev     string
		modules []string
		want    bool
		why     string
	}{
		{"hardware intel", "/dev/null", []string{"kvm", "kvm_intel"}, true, ""},
		{"hardware amd", "/dev/null", []string{"kvm", "kvm_amd"}, true, ""},
		{"no module tree", "/dev/null", nil, true, ""},
		{"pvm only", "/dev/null", []string{"kvm", "kvm_pvm"}, false, "kvm_pvm"},
		{"pvm beside intel", "/dev/null", []string{"kvm", "kvm_pvm", "kvm_intel"}, true, ""},
		{"no device", "/nonexistent/kvm", []string{"kvm", "kvm_intel"}, false, "cannot be opened read-write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := t.TempDir()
			for _, m := range tc.modules {
				if err := os.Mkdir(filepath.Join(mods, m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			ok, why := kvmUsable(tc.dev, mods)
			if ok != tc.want || !strings.Contains(why, tc.why) || (ok && why != "") {
				t.Errorf("kvmUsable(%s, %v) = %v, %q; want %v, containing %q", tc.dev, tc.modules, ok, why, tc.want, tc.why)
			}
		})
	}
}

// TestDescribeStop: the Killing event of a VM says what Stop does (an
// ACPI power-down, or a quit when graceful_shutdown is false), read from
// the graceful_shutdown file the driver keeps beside the handle.
func TestDescribeStop(t *testing.T) {
	dir := t.TempDir()
	h := &driver.Handle{Task: "guest", Internal: `{"state_dir":"` + filepath.Join(dir, ".qemu") + `"}`}
	task := filepath.Join(dir, "guest")
	if err := os.MkdirAll(task, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Driver{}
	for _, tc := range []struct {
		file  string // graceful_shutdown's content; "" for no file
		grace time.Duration
		want  string
	}{
		{"", 5 * time.Second, "ACPI power-down through QMP; QEMU is told to quit if the guest is still up after 5s"},
		{"true", 5 * time.Second, "ACPI power-down"},
		{"false", 5 * time.Second, "told QEMU to quit through QMP (graceful_shutdown is false)"},
		{"true", 0, "told QEMU to quit"},
	} {
		os.Remove(filepath.Join(task, gracefulFile))
		if tc.file != "" {
			if err := os.WriteFile(filepath.Join(task, gracefulFile), []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := d.DescribeStop(h, tc.grace); !strings.Contains(got, tc.want) || strings.Contains(got, "SIGTERM") {
			t.Errorf("graceful_shutdown %q, grace %s: %q, want one containing %q", tc.file, tc.grace, got, tc.want)
		}
	}
}
