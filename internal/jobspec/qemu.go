package jobspec

import (
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// The rules for the qemu driver's config keys (image, kernel, initrd,
// append, accelerator, machine, cpu_model, graceful_shutdown,
// network_counters) and for the
// keys of other drivers on a qemu task. Whether the files exist and what
// format an image is can only be known on the node: the driver checks that
// when it starts the VM.

var (
	qemuMachine  = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	qemuCPUModel = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9_.,+=-]{0,254}$`)
)

// qemuKeys reports the qemu-only keys set on a task of another driver.
func (v *validator) qemuKeys(t *api.Task, cp string) {
	c := t.Config
	for _, k := range []struct {
		key string
		set bool
	}{
		{"kernel", c.Kernel != ""}, {"initrd", c.Initrd != ""}, {"append", c.Append != ""},
		{"accelerator", c.Accelerator != ""}, {"machine", c.Machine != ""}, {"cpu_model", c.CPUModel != ""},
		{"graceful_shutdown", c.GracefulShutdown != nil}, {"network_counters", c.NetworkCounters != nil},
	} {
		if k.set {
			v.add(cp+"."+k.key, "applies only to the qemu driver")
		}
	}
}

// qemu checks a qemu task's config.
func (v *validator) qemu(t *api.Task, p, cp string) {
	c := t.Config
	if c.Image == "" && c.Kernel == "" {
		v.add(cp+".image", "or config.kernel is required by the qemu driver: give a disk image to boot, a kernel to boot directly, or both")
	}
	for _, f := range []struct{ key, val string }{{"image", c.Image}, {"kernel", c.Kernel}, {"initrd", c.Initrd}} {
		if f.val == "" || !v.length(cp+"."+f.key, f.val, MaxString) {
			continue
		}
		switch {
		case !strings.HasPrefix(f.val, "/"):
			v.add(cp+"."+f.key, "%s is not an absolute path on the node; start it with /", quote(f.val))
		case strings.ContainsAny(f.val, ",\x00\r\n"):
			v.add(cp+"."+f.key, "%s holds a comma or a control character, which QEMU's options cannot carry; rename the file", quote(f.val))
		}
	}
	if c.Initrd != "" && c.Kernel == "" {
		v.add(cp+".initrd", "needs config.kernel: an initrd is loaded only with a directly booted kernel")
	}
	if c.Append != "" && c.Kernel == "" {
		v.add(cp+".append", "needs config.kernel: the kernel command line applies only to a directly booted kernel")
	}
	if v.length(cp+".append", c.Append, MaxString) && strings.ContainsAny(c.Append, "\x00\r\n") {
		v.add(cp+".append", "must be one line without control characters")
	}
	switch c.Accelerator {
	case "", api.AccelAuto, api.AccelKVM, api.AccelTCG:
	default:
		v.add(cp+".accelerator", "%s is not an accelerator; use auto, kvm or tcg", quote(c.Accelerator))
	}
	if c.Machine != "" && !qemuMachine().MatchString(c.Machine) {
		v.add(cp+".machine", "%s is not a QEMU machine type; use a name like q35 or pc", quote(c.Machine))
	}
	if c.CPUModel != "" && !qemuCPUModel().MatchString(c.CPUModel) {
		v.add(cp+".cpu_model", "%s is not a QEMU CPU model; use a name like host, max or Skylake-Server, optionally with ,+flag", quote(c.CPUModel))
	}
	if c.Command != "" {
		v.add(cp+".command", "applies to the docker and exec drivers; a VM runs what its image or kernel boots")
	}
	if len(c.Entrypoint) > 0 {
		v.add(cp+".entrypoint", "applies only to the docker driver")
	}
	if len(c.Env) > 0 {
		v.add(cp+".env", "cannot reach a VM: the guest does not see the node's environment; pass settings on config.append")
	}
	guest := map[int]string{}
	for i, port := range c.Ports[:min(len(c.Ports), MaxPorts)] {
		q := index(cp+".ports", i)
		switch {
		case port.To == 0:
			v.add(q+".to", "is required by the qemu driver: it is the guest port the host port is forwarded to")
		case guest[port.To] != "":
			v.add(q+".to", "forwards to guest port %d, as %s already does; each guest port can be forwarded once", port.To, guest[port.To])
		default:
			guest[port.To] = q
		}
	}
	for i, ch := range t.Checks[:min(len(t.Checks), MaxChecks)] {
		if ch.Type == api.CheckExec {
			v.add(index(p+".checks", i)+".type", "exec checks cannot run in a VM: Gantry has no agent inside the guest; use an http or tcp check on a forwarded port")
		}
	}
	if g := t.Resources.GPU; g != nil && (g.MIG != "" || g.Share != nil) {
		v.add(p+".resources.gpu", "a VM can only be given whole GPUs (count), passed through with VFIO; MIG instances and shares are not supported")
	}
}
