package qemu

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"time"
)

// System is what the node offers for VMs, found by Probe.
type System struct {
	QEMU    string // path of qemu-system-x86_64; empty when absent
	QEMUImg string // path of qemu-img; empty when absent
	Version string // "7.2.22"
	KVM     bool
	KVMWhy  string // why not, when not

	stamp string // the binary's size and modification time
}

var versionRE = regexp.MustCompile(`QEMU emulator version ([0-9][0-9A-Za-z.+~-]*)`)

// ParseVersion reads the version from qemu-system-x86_64 --version.
func ParseVersion(out string) string {
	if m := versionRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// kvmUsable reports whether /dev/kvm opens read-write and runs ordinary
// guests, and why not. A KVM whose only backend is kvm_pvm (the
// paravirtual KVM of some cloud sandboxes, loaded without kvm_intel or
// kvm_amd) opens fine but runs only PVM-built guest kernels: a stock
// kernel hangs in its boot, so auto must choose software emulation there.
// sysModule is the kernel's /sys/module directory.
func kvmUsable(path, sysModule string) (bool, string) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("%s cannot be opened read-write: %v", path, err)
	}
	f.Close()
	loaded := func(m string) bool {
		_, err := os.Stat(filepath.Join(sysModule, m))
		return err == nil
	}
	if loaded("kvm_pvm") && !loaded("kvm_intel") && !loaded("kvm_amd") {
		return false, fmt.Sprintf("%s is the paravirtual kvm_pvm, which runs only PVM guest kernels (neither kvm_intel nor kvm_amd is loaded)", path)
	}
	return true, ""
}

// Probe finds QEMU on PATH (bin overrides the binary) and checks KVM
// (sysfsRoot is where the kernel's /sys is, normally "/sys").
// prev is the last probe: its version is kept while the binary's size
// and modification time are unchanged, so that a fingerprint every few
// seconds does not start QEMU each time.
func Probe(ctx context.Context, bin, kvmPath, sysfsRoot string, prev *System) System {
	var s System
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	if p, err := osexec.LookPath(bin); err == nil {
		s.QEMU = p
		if st, err := os.Stat(p); err == nil {
			s.stamp = fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
		}
		if prev != nil && prev.QEMU == p && prev.stamp == s.stamp && prev.Version != "" {
			s.Version = prev.Version
		}
	}
	if s.QEMU != "" && s.Version == "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if out, err := osexec.CommandContext(ctx, s.QEMU, "--version").Output(); err == nil {
			s.Version = ParseVersion(string(out))
		}
	}
	if p, err := osexec.LookPath("qemu-img"); err == nil {
		s.QEMUImg = p
	}
	s.KVM, s.KVMWhy = kvmUsable(kvmPath, filepath.Join(sysfsRoot, "module"))
	return s
}
