// Package qemu is Gantry's qemu driver: it runs a task as a virtual
// machine, with KVM where the node's /dev/kvm opens read-write and with
// QEMU's software emulation (TCG) elsewhere.
//
// A VM is one QEMU process started under the exec driver's executor
// (exec.Config.Kind "qemu", state files in AllocDir/.qemu/), so it
// outlives the agent exactly as an exec task does: after a kill -9 of the
// agent a new Driver finds the same QEMU process (same pid, checked with
// its start time) and never boots a second VM for the allocation. The
// driver talks to the VM over its QMP socket, AllocDir/<task>/qmp.sock:
// query-status once QEMU runs, system_powerdown for a graceful stop, quit
// after the kill timeout.
//
// Disks: config.image (qcow2 or raw, detected from its first bytes) is
// never written. Each allocation boots from its own copy-on-write qcow2
// overlay, AllocDir/<task>/disk.qcow2, made with qemu-img and removed by
// Destroy. config.kernel, initrd and append boot a kernel directly; both
// forms may be used together.
//
// Resources: cpu millicores become vCPUs rounded up (VCPUs), memory
// becomes the guest's RAM, and the QEMU process is allowed
// Overhead MiB on top (the cgroup's memory.max where the exec driver
// enforces limits).
//
// Network: user-mode networking (the guest is 10.0.2.15/24) with one
// hostfwd per named port, from the scheduler's host port on the node
// address to the guest port `to`, so health checks and load balancers
// reach a VM like a container. Unless network_counters is false, two
// filter-mirror objects copy every frame of net0 to descriptors 3 (what
// the guest sent) and 4 (what it received), pipes the executor counts
// (exec.StartOptions.FrameStreams): user-mode networking counts no bytes
// QMP can read. The guest's serial console is the task's stdout log,
// QEMU's own messages its stderr log.
//
// GPUs: a VM is given whole GPUs bound to vfio-pci (internal/vfio
// finds them; the scheduler gives them to VMs only). Start reads sysfs
// again and adds -device vfio-pci,host=<address> for each GPU and for the
// other vfio-pci devices of its IOMMU group, or refuses with the reason
// when one is no longer bound to vfio-pci. This has not run on hardware.
//
// The package owns the QEMU command line (Args, a pure function of a
// Plan), images and overlays, the QMP client and the fingerprint. It must
// never talk to the state store, decide placement, or restart a VM: the
// agent decides that.
package qemu
