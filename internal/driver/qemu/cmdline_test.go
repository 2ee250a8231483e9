package qemu

import (
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vfio/vfiotest"
)

func vmTask(mod func(*api.Task)) *api.Task {
	t := &api.Task{
		Name: "vm", Driver: api.DriverQEMU,
		Config: api.TaskConfig{
			Kernel: "/guest/vmlinuz", Initrd: "/guest/initrd.img", Append: "console=ttyS0 quiet",
			Ports: []api.PortSpec{{Name: "http", To: 8080}},
		},
		Resources: api.Resources{CPU: 1000, Memory: 256},
	}
	if mod != nil {
		mod(t)
	}
	return t
}

func res(cpu, mem int, ports ...api.AllocatedPort) *api.AllocatedResources {
	return &api.AllocatedResources{CPU: cpu, Memory: mem, Ports: ports}
}

// TestArgs checks the command line built from a task, flag by flag: the
// place where a wrong default or a lost option would hide.
func TestArgs(t *testing.T) {
	http := api.AllocatedPort{Name: "http", Host: 23456, To: 8080}
	base := "-nodefaults -no-user-config -display none -no-reboot"
	tests := []struct {
		name string
		task *api.Task
		res  *api.AllocatedResources
		bind string
		kvm  bool
		// count: network_counters left to its default (true): net0's
		// frames mirrored onto descriptors 3 and 4 for the executor to
		// count; otherwise the case sets network_counters: false.
		count bool
		want  string // the whole command line
	}{
		{
			name: "direct boot under TCG, one forwarded port on the node address",
			task: vmTask(nil), res: res(1000, 256, http), bind: "127.0.0.1",
			want: base + " -machine q35 -accel tcg,tb-size=64 -smp 1 -m 256M" +
				" -chardev stdio,id=serial0,signal=off -serial chardev:serial0 -qmp unix:qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,hostfwd=tcp:127.0.0.1:23456-:8080 -device virtio-net-pci,netdev=net0" +
				" -kernel /guest/vmlinuz -initrd /guest/initrd.img -append console=ttyS0 quiet",
		},
		{
			name: "auto picks KVM with the host CPU; millicores round up to vCPUs; image boots from the overlay",
			task: vmTask(func(t *api.Task) {
				t.Config.Kernel, t.Config.Initrd, t.Config.Append = "", "", ""
				t.Config.Image = "/images/app.qcow2"
			}),
			res: res(1500, 1024, http), kvm: true,
			want: base + " -machine q35 -accel kvm -cpu host -smp 2 -m 256M" +
				" -chardev stdio,id=serial0,signal=off -serial chardev:serial0 -qmp unix:qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,hostfwd=tcp::23456-:8080 -device virtio-net-pci,netdev=net0" +
				" -drive file=disk.qcow2,format=qcow2,if=virtio",
		},
		{
			name: "tcg asked for on a KVM node; machine, cpu model and extra args kept in order",
			task: vmTask(func(t *api.Task) {
				t.Config.Accelerator, t.Config.Machine, t.Config.CPUModel = api.AccelTCG, "pc", "max"
				t.Config.Initrd, t.Config.Append, t.Config.Ports = "", "", nil
				t.Config.Args = []string{"-rtc", "base=utc"}
			}),
			res: res(250, 128), kvm: true,
			want: base + " -machine pc -accel tcg,tb-size=64 -cpu max -smp 1 -m 256M" +
				" -chardev stdio,id=serial0,signal=off -serial chardev:serial0 -qmp unix:qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0 -device virtio-net-pci,netdev=net0" +
				" -kernel /guest/vmlinuz -rtc base=utc",
		},
		{
			name: "network counted: what the guest sends (queue rx) on descriptor 3, what it receives (queue tx) on 4",
			task: vmTask(nil), res: res(1000, 256, http), bind: "127.0.0.1", count: true,
			want: base + " -machine q35 -accel tcg,tb-size=64 -smp 1 -m 256M" +
				" -chardev stdio,id=serial0,signal=off -serial chardev:serial0 -qmp unix:qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,hostfwd=tcp:127.0.0.1:23456-:8080 -device virtio-net-pci,netdev=net0" +
				" -chardev file,id=countrx,path=/proc/self/fd/3 -object filter-mirror,id=countrx-mirror,netdev=net0,queue=rx,outdev=countrx" +
				" -chardev file,id=counttx,path=/proc/self/fd/4 -object filter-mirror,id=counttx-mirror,netdev=net0,queue=tx,outdev=counttx" +
				" -kernel /guest/vmlinuz -initrd /guest/initrd.img -append console=ttyS0 quiet",
		},
		{
			name: "two ports, the allocation's cpu wins, the guest gets the task's memory (the allocation's holds the overhead), both disk and kernel",
			task: vmTask(func(t *api.Task) {
				t.Config.Image = "/images/raw.img"
				t.Config.Ports = append(t.Config.Ports, api.PortSpec{Name: "ssh", To: 22})
			}),
			res: res(3001, 512, http, api.AllocatedPort{Name: "ssh", Host: 23457, To: 22}), bind: "10.0.0.5",
			want: base + " -machine q35 -accel tcg,tb-size=64 -smp 4 -m 256M" +
				" -chardev stdio,id=serial0,signal=off -serial chardev:serial0 -qmp unix:qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,hostfwd=tcp:10.0.0.5:23456-:8080,hostfwd=tcp:10.0.0.5:23457-:22 -device virtio-net-pci,netdev=net0" +
				" -drive file=disk.qcow2,format=qcow2,if=virtio -kernel /guest/vmlinuz -initrd /guest/initrd.img -append console=ttyS0 quiet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.count {
				off := false
				tc.task.Config.NetworkCounters = &off
			}
			p, err := NewPlan(tc.task, tc.res, tc.bind, tc.kvm)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(Args(p), " "); got != tc.want {
				t.Errorf("command line\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

// TestPassthroughArgs: the GPUs allocated to a VM become vfio-pci
// devices on its command line, read from sysfs at start: each GPU, then
// the other vfio-pci devices of its IOMMU group; a GPU that is not (or
// no longer) bound to vfio-pci stops the start with the reason. The sysfs
// trees are fake (vfiotest): no machine here has an IOMMU or a GPU, so
// QEMU has never been started with these devices.
func TestPassthroughArgs(t *testing.T) {
	h100 := func(addr, driver string, group int) vfiotest.Dev {
		return vfiotest.Dev{Addr: addr, Class: vfiotest.Class3D, Driver: driver, Group: group}
	}
	node := []vfiotest.Dev{
		h100("0000:01:00.0", "vfio-pci", 12),
		h100("0000:02:00.0", "vfio-pci", 13),
		{Addr: "0000:03:00.0", Class: vfiotest.ClassVGA, Driver: "vfio-pci", Group: 14},
		{Addr: "0000:03:00.1", Class: vfiotest.ClassAudio, Driver: "vfio-pci", Group: 14},
		h100("0000:04:00.0", "nvidia", 15),
		{Addr: "0000:05:00.0", Class: vfiotest.ClassVGA, Driver: "vfio-pci", Group: 16},
		{Addr: "0000:05:00.1", Class: vfiotest.ClassAudio, Driver: "snd_hda_intel", Group: 16},
	}
	whole := func(devs ...string) *api.AllocatedGPU { return &api.AllocatedGPU{Devices: devs} }
	tests := []struct {
		name string
		gpu  *api.AllocatedGPU
		want string // the command line's end, after the kernel
		err  string
	}{
		{name: "no GPU, no vfio-pci device", want: ""},
		{name: "one GPU", gpu: whole("0000:01:00.0"), want: " -device vfio-pci,host=0000:01:00.0"},
		{name: "two GPUs, in the order allocated", gpu: whole("0000:02:00.0", "0000:01:00.0"),
			want: " -device vfio-pci,host=0000:02:00.0 -device vfio-pci,host=0000:01:00.0"},
		{name: "the audio function of the GPU's IOMMU group goes with it", gpu: whole("0000:03:00.0"),
			want: " -device vfio-pci,host=0000:03:00.0 -device vfio-pci,host=0000:03:00.1"},
		{name: "a GPU on the NVIDIA driver at start", gpu: whole("0000:04:00.0"),
			err: "GPU 0000:04:00.0 cannot be passed through to a VM: bound to nvidia, not vfio-pci"},
		{name: "a group with a device still on the host", gpu: whole("0000:05:00.0"),
			err: "IOMMU group 16 also holds 0000:05:00.1, bound to snd_hda_intel; bind it to vfio-pci too"},
		{name: "a GPU this node does not have", gpu: whole("0000:09:00.0"),
			err: "GPU 0000:09:00.0 is not a PCI display device of this node"},
		{name: "an NVML GPU's UUID", gpu: whole("GPU-5f1c"), err: "GPU GPU-5f1c is not a PCI display device"},
		{name: "a share", gpu: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "0000:01:00.0", Milli: 500}},
			err: "a VM can only be given whole GPUs"},
	}
	root := t.TempDir()
	if err := vfiotest.Write(root, node); err != nil {
		t.Fatal(err)
	}
	d := &Driver{cfg: Config{SysfsRoot: root}}
	base := "-nodefaults -no-user-config -display none -no-reboot -machine q35 -accel tcg,tb-size=64 -smp 1 -m 256M" +
		" -chardev stdio,id=serial0,signal=off -serial chardev:serial0 -qmp unix:qmp.sock,server=on,wait=off" +
		" -netdev user,id=net0,hostfwd=tcp::23456-:8080 -device virtio-net-pci,netdev=net0" +
		" -chardev file,id=countrx,path=/proc/self/fd/3 -object filter-mirror,id=countrx-mirror,netdev=net0,queue=rx,outdev=countrx" +
		" -chardev file,id=counttx,path=/proc/self/fd/4 -object filter-mirror,id=counttx-mirror,netdev=net0,queue=tx,outdev=counttx" +
		" -kernel /guest/vmlinuz -initrd /guest/initrd.img -append console=ttyS0 quiet"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := res(1000, 256, api.AllocatedPort{Name: "http", Host: 23456, To: 8080})
			r.GPU = tc.gpu
			p, err := NewPlan(vmTask(nil), r, "", false)
			if err != nil {
				t.Fatal(err)
			}
			p.VFIO, err = d.passthrough(r)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(Args(p), " "); got != base+tc.want {
				t.Errorf("command line\n got: %s\nwant: %s", got, base+tc.want)
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name string
		task *api.Task
		res  *api.AllocatedResources
		kvm  bool
		want string
	}{
		{"kvm without KVM", vmTask(func(t *api.Task) { t.Config.Accelerator = api.AccelKVM }), res(1000, 256, api.AllocatedPort{Name: "http", Host: 1, To: 8080}), false, "KVM is not usable on this node"},
		{"nothing to boot", vmTask(func(t *api.Task) { t.Config.Kernel = "" }), res(1000, 256, api.AllocatedPort{Name: "http", Host: 1, To: 8080}), false, "neither config.image nor config.kernel"},
		{"guest port twice", vmTask(func(t *api.Task) {
			t.Config.Ports = append(t.Config.Ports, api.PortSpec{Name: "alt", To: 8080})
		}), res(1000, 256, api.AllocatedPort{Name: "http", Host: 1, To: 8080}, api.AllocatedPort{Name: "alt", Host: 2, To: 8080}), false, "forwarded twice"},
		{"port without host port", vmTask(nil), res(1000, 256), false, "no host port allocated"},
		{"no memory", vmTask(func(t *api.Task) { t.Resources.Memory = 0 }), res(1000, 0, api.AllocatedPort{Name: "http", Host: 1, To: 8080}), false, "no memory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan(tc.task, tc.res, "", tc.kvm)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestVCPUs(t *testing.T) {
	for _, tc := range []struct{ milli, want int }{{0, 1}, {1, 1}, {999, 1}, {1000, 1}, {1001, 2}, {2500, 3}, {4000, 4}} {
		if got := VCPUs(tc.milli); got != tc.want {
			t.Errorf("VCPUs(%d) = %d, want %d", tc.milli, got, tc.want)
		}
	}
}

func TestDetectFormat(t *testing.T) {
	qcow2 := func(v byte) []byte { return append([]byte("QFI\xfb\x00\x00\x00"), v) }
	tests := []struct {
		name string
		head []byte
		want string
		err  string
	}{
		{"qcow2 v3", qcow2(3), FormatQCOW2, ""},
		{"qcow2 v2", qcow2(2), FormatQCOW2, ""},
		{"zeros are raw", make([]byte, 512), FormatRaw, ""},
		{"an MBR is raw", append(make([]byte, 510), 0x55, 0xaa), FormatRaw, ""},
		{"vmdk", []byte("KDMV\x01\x00\x00\x00"), "", "vmdk"},
		{"vhdx", []byte("vhdxfile"), "", "vhdx"},
		{"vdi", append(make([]byte, 64), 0x7f, 0x10, 0xda, 0xbe), "", "vdi"},
		{"qcow version 1", qcow2(1), "", "qcow (version 1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectFormat(tc.head)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DetectFormat: %q, %v; want an error naming %s", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DetectFormat: %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	out := "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard\n"
	if got := ParseVersion(out); got != "7.2.22" {
		t.Errorf("ParseVersion = %q", got)
	}
	if got := ParseVersion("something else"); got != "" {
		t.Errorf("ParseVersion of junk = %q, want empty", got)
	}
}
