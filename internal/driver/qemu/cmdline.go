package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Files of a VM in AllocDir/<task>/, the QEMU process's working directory,
// named relative to it on the command line (so that a long allocation
// directory cannot push the QMP socket past the 108 bytes a unix socket
// path may have).
const (
	OverlayFile = "disk.qcow2"
	QMPFile     = "qmp.sock"
)

// Defaults of a VM.
const (
	DefaultMachine = "q35"
	// Overhead is the memory, in MiB, a VM may use beyond its guest RAM:
	// QEMU's own code, device models, and under TCG its translation cache
	// (capped at TBSizeMiB). Nodes account it (api.TaskMemory); see the
	// README's qemu section for what was measured.
	Overhead = api.QEMUMemoryOverhead
	// TBSizeMiB caps TCG's translation cache (QEMU's default is 1 GiB).
	TBSizeMiB = 64
)

// Forward is one forwarded port: Addr:Host on the node to Guest in the VM.
type Forward struct {
	Addr  string // empty: all of the node's addresses
	Host  int
	Guest int
}

// Plan is everything the command line depends on, resolved: Args is a
// pure function of it.
type Plan struct {
	Accel     string // api.AccelKVM or api.AccelTCG
	Machine   string
	CPUModel  string
	VCPUs     int
	MemoryMiB int
	// Overlay is the disk to boot, relative to the working directory;
	// empty without config.image.
	Overlay  string
	Kernel   string
	Initrd   string
	Append   string
	Forwards []Forward
	// VFIO lists PCI addresses (0000:01:00.0) to pass through.
	VFIO  []string
	Extra []string
	// CountNetwork mirrors every frame of net0 onto descriptors 3 (what
	// the guest sent) and 4 (what it received), which the executor counts:
	// user-mode networking counts no bytes anywhere QMP reads.
	CountNetwork bool
}

// Network counting: the frame streams the executor counts for net0, in
// the order of the descriptors Args hands QEMU's filter-mirror (3, 4).
const (
	NetDevice      = "net0"
	StreamSent     = NetDevice + ".sent"     // frames from the guest: filter queue rx
	StreamReceived = NetDevice + ".received" // frames to the guest: filter queue tx
)

// NetStreams are the frame streams of a plan that counts its network, in
// descriptor order from 3.
var NetStreams = []string{StreamSent, StreamReceived}

// VCPUs is the number of vCPUs for cpu millicores: rounded up, at least 1.
func VCPUs(milli int) int {
	return api.QEMUVCPUs(milli)
}

// NewPlan resolves a task's config into a Plan. kvm says whether the node
// can use KVM; accelerator auto picks it when it can. The error is one
// sentence for the task's events.
func NewPlan(t *api.Task, res *api.AllocatedResources, bindAddress string, kvm bool) (*Plan, error) {
	c := t.Config
	p := &Plan{
		Machine: c.Machine, CPUModel: c.CPUModel,
		Kernel: c.Kernel, Initrd: c.Initrd, Append: c.Append,
		Extra:        c.Args,
		CountNetwork: c.NetworkCounters == nil || *c.NetworkCounters,
	}
	if p.Machine == "" {
		p.Machine = DefaultMachine
	}
	switch c.Accelerator {
	case "", api.AccelAuto:
		p.Accel = api.AccelTCG
		if kvm {
			p.Accel = api.AccelKVM
		}
	case api.AccelKVM:
		if !kvm {
			return nil, fmt.Errorf("accelerator kvm was asked for, but KVM is not usable on this node (its driver.qemu.kvm attribute is false); use accelerator auto or tcg, or a node with KVM")
		}
		p.Accel = api.AccelKVM
	case api.AccelTCG:
		p.Accel = api.AccelTCG
	default:
		return nil, fmt.Errorf("accelerator %q is not one of auto, kvm, tcg", c.Accelerator)
	}
	// The guest gets the task's memory; what the node accounts beyond it
	// (the allocation's memory) is QEMU's overhead.
	cpu, mem := t.Resources.CPU, t.Resources.Memory
	if res != nil {
		cpu = res.CPU
	}
	p.VCPUs, p.MemoryMiB = VCPUs(cpu), mem
	if p.MemoryMiB <= 0 {
		return nil, fmt.Errorf("the task asks for no memory; a VM needs resources.memory MiB of guest RAM")
	}
	if c.Image != "" {
		p.Overlay = OverlayFile
	}
	if p.Kernel == "" && p.Overlay == "" {
		return nil, fmt.Errorf("the task has neither config.image nor config.kernel: a VM needs something to boot")
	}
	hosts := map[string]int{}
	if res != nil {
		for _, a := range res.Ports {
			hosts[a.Name] = a.Host
		}
	}
	seen := map[int]string{}
	for _, ps := range c.Ports {
		host, ok := hosts[ps.Name]
		if !ok && ps.Static > 0 {
			host = ps.Static
		}
		if host == 0 {
			return nil, fmt.Errorf("port %q has no host port allocated", ps.Name)
		}
		guest := ps.To
		if guest == 0 {
			return nil, fmt.Errorf("port %q has no guest port (to)", ps.Name)
		}
		if other, dup := seen[guest]; dup {
			return nil, fmt.Errorf("guest port %d is forwarded twice (ports %q and %q)", guest, other, ps.Name)
		}
		seen[guest] = ps.Name
		p.Forwards = append(p.Forwards, Forward{Addr: bindAddress, Host: host, Guest: guest})
	}
	return p, nil
}

// Args is QEMU's command line for a Plan, without the program name: no
// default devices, no display, the serial console on stdout, QMP on
// QMPFile, user-mode networking with the forwards, the overlay as a virtio
// disk, the direct-boot kernel, VFIO devices, then the task's own args.
// -no-reboot makes a guest reboot or power-off end QEMU.
func Args(p *Plan) []string {
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", p.Machine,
	}
	if p.Accel == api.AccelTCG {
		a = append(a, "-accel", "tcg,tb-size="+strconv.Itoa(TBSizeMiB))
	} else {
		a = append(a, "-accel", p.Accel)
	}
	cpu := p.CPUModel
	if cpu == "" && p.Accel == api.AccelKVM {
		cpu = "host"
	}
	if cpu != "" {
		a = append(a, "-cpu", cpu)
	}
	a = append(a,
		"-smp", strconv.Itoa(p.VCPUs),
		"-m", strconv.Itoa(p.MemoryMiB)+"M",
		"-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0",
		"-qmp", "unix:"+QMPFile+",server=on,wait=off",
	)
	netdev := "user,id=net0"
	for _, f := range p.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:%s:%d-:%d", f.Addr, f.Host, f.Guest)
	}
	a = append(a, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
	if p.CountNetwork {
		// A netdev's rx queue carries what the guest sends, its tx queue
		// what the guest receives. The chardevs reopen the pipes the
		// executor handed over (a /proc/self/fd path works for any pipe).
		for i, q := range []string{"rx", "tx"} {
			id := "count" + q
			a = append(a,
				"-chardev", fmt.Sprintf("file,id=%s,path=/proc/self/fd/%d", id, 3+i),
				"-object", fmt.Sprintf("filter-mirror,id=%s-mirror,netdev=net0,queue=%s,outdev=%s", id, q, id))
		}
	}
	if p.Overlay != "" {
		a = append(a, "-drive", "file="+p.Overlay+",format=qcow2,if=virtio")
	}
	if p.Kernel != "" {
		a = append(a, "-kernel", p.Kernel)
		if p.Initrd != "" {
			a = append(a, "-initrd", p.Initrd)
		}
		if p.Append != "" {
			a = append(a, "-append", p.Append)
		}
	}
	for _, dev := range p.VFIO {
		a = append(a, "-device", "vfio-pci,host="+dev)
	}
	return append(a, p.Extra...)
}

// String renders a command line for messages, quoting what needs it.
func String(argv []string) string {
	out := make([]string, len(argv))
	for i, s := range argv {
		if s == "" || strings.ContainsAny(s, " \t\"'\\") {
			s = strconv.Quote(s)
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}
