package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	s := Probe(ctx, bin, filepath.Join(dir, "kvm"), nil)
	if s.QEMU != bin || s.Version != "9.1.0" || s.KVM || !strings.Contains(s.KVMWhy, "cannot be opened read-write") {
		t.Fatalf("probe: %+v", s)
	}
	s2 := Probe(ctx, bin, filepath.Join(dir, "kvm"), &s)
	if s2.Version != "9.1.0" {
		t.Fatalf("second probe: %+v", s2)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "run") != 1 {
		t.Errorf("the binary ran %d times for two probes, want 1", strings.Count(string(b), "run"))
	}
	if s := Probe(ctx, filepath.Join(dir, "absent"), "/dev/null", nil); s.QEMU != "" {
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
