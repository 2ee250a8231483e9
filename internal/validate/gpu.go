package validate

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// gpus reports GPU requests no node could ever serve. The scheduler says
// how far each request got on each node; the furthest stage any node
// reached picks the message, which names what the cluster has instead.
func (v *checker) gpus(i int, g *api.Group, gf scheduler.GroupFeasibility) {
	for k, j := range gf.GPUTasks {
		furthest := scheduler.GPUNoDevices
		for _, nf := range gf.Nodes {
			furthest = max(furthest, nf.GPU[k])
		}
		if furthest == scheduler.GPUFits {
			continue
		}
		r := g.Tasks[j].Resources.GPU
		p := tpath(i, j) + ".resources.gpu"
		vm := g.Tasks[j].Driver == api.DriverQEMU
		devs := devices(gf.Nodes, r.Model, vm)
		switch furthest {
		case scheduler.GPUNoDevices:
			v.add(Unplaceable, p, "asks for GPUs, but no node has any")
		case scheduler.GPUKind:
			if vm {
				v.add(Unplaceable, p, "a VM is given only GPUs bound to vfio-pci for passthrough, and no node has one (bind a GPU to vfio-pci with the IOMMU on; gantry node status shows gpu.passthrough)")
			} else {
				v.add(Unplaceable, p, "the only GPUs are bound to vfio-pci for passthrough to VMs (driver qemu); a container or process cannot use them")
			}
		case scheduler.GPUModel:
			models := map[string][]string{}
			for _, d := range devices(gf.Nodes, "", vm) {
				models[strconv.Quote(d.dev.Model)] = appendOnce(models[strconv.Quote(d.dev.Model)], d.node)
			}
			v.add(Unplaceable, p+".model", "%q matches no GPU in the cluster; %s", r.Model, offers("the models nodes have are", models, "no node has a GPU"))
		case scheduler.GPUMemory:
			best := largest(devs, func(d *api.GPUDevice) int { return d.Memory })
			v.add(Unplaceable, p+".memory_min", "no GPU%s has %d MiB of memory; the largest has %d MiB (%s)", modelNote(r.Model), r.MemoryMin, best.dev.Memory, best.node)
		case scheduler.GPUComputeCapability:
			best := largest(devs, func(d *api.GPUDevice) int { cc, _ := gpu.ParseCC(d.ComputeCapability); return cc })
			v.add(Unplaceable, p+".compute_capability_min", "no GPU%s has compute capability %s or higher; the highest is %s (%s)", modelNote(r.Model), r.ComputeCapabilityMin, best.dev.ComputeCapability, best.node)
		case scheduler.GPUHealth:
			v.add(Unplaceable, p, "every GPU that matches is unhealthy")
		case scheduler.GPUMode:
			if r.MIG != "" {
				v.add(Unplaceable, p+".mig", "no GPU%s is in MIG mode, so no node offers MIG instances; ask for count or share instead, or enable MIG on a node", modelNote(r.Model))
			} else {
				v.add(Unplaceable, p, "every GPU%s is in MIG mode, so none can be had whole or shared; ask for a MIG profile instead (%s)", modelNote(r.Model), profilesOffered(devs))
			}
		case scheduler.GPUEnforce:
			v.add(Unplaceable, p+".share.enforce", "no GPU%s enforces shares (no node runs MPS); leave enforce out or add a node that enforces them", modelNote(r.Model))
		case scheduler.GPUProfile:
			v.add(Unplaceable, p+".mig", "MIG profile %s is offered by no GPU in MIG mode%s; %s", r.MIG, modelNote(r.Model), profilesOffered(devs))
		default: // capacity
			switch {
			case r.Count > 0:
				most, where := 0, ""
				for _, nf := range gf.Nodes {
					if n := len(devices([]scheduler.NodeFeasibility{nf}, r.Model, vm)); n > most {
						most, where = n, nodeName(nf.Node)
					}
				}
				v.add(Unplaceable, p+".count", "asks for %d GPUs on one node, but the node with the most%s, %s, has %d", r.Count, modelNote(r.Model), where, most)
			case r.Share != nil:
				best := largest(devs, func(d *api.GPUDevice) int { return d.Memory })
				v.add(Unplaceable, p+".share.memory", "asks %d MiB of one GPU, but the largest GPU%s has %d MiB (%s)", r.Share.Memory, modelNote(r.Model), best.dev.Memory, best.node)
			default:
				v.add(Unplaceable, p+".mig", "no GPU can hold an instance of %s even when empty: Gantry may not create MIG instances on them (mig_managed is off) and no free instance of %s exists; %s", r.MIG, r.MIG, existingInstances(devs))
			}
		}
	}
}

type located struct {
	dev  *api.GPUDevice
	node string
}

// devices lists the GPUs of the nodes whose model matches pattern (every
// GPU for an empty pattern) and that a task of that kind may be given:
// passthrough GPUs for a VM, the others for the rest.
func devices(nodes []scheduler.NodeFeasibility, pattern string, vm bool) []located {
	var out []located
	for _, nf := range nodes {
		for k := range nf.Node.GPUs {
			d := &nf.Node.GPUs[k]
			if d.Passthrough == vm && (pattern == "" || gpu.MatchModel(pattern, d.Model)) {
				out = append(out, located{d, nodeName(nf.Node)})
			}
		}
	}
	return out
}

func largest(devs []located, key func(*api.GPUDevice) int) located {
	best := located{dev: &api.GPUDevice{}, node: "none"}
	for _, d := range devs {
		if best.node == "none" || key(d.dev) > key(best.dev) {
			best = d
		}
	}
	return best
}

func modelNote(pattern string) string {
	if pattern == "" {
		return ""
	}
	return fmt.Sprintf(" matching %q", pattern)
}

func appendOnce(s []string, x string) []string {
	for _, y := range s {
		if y == x {
			return s
		}
	}
	return append(s, x)
}

// profilesOffered names the MIG profiles the MIG-enabled GPUs offer.
func profilesOffered(devs []located) string {
	offered := map[string][]string{}
	for _, l := range devs {
		if !l.dev.MIGEnabled {
			continue
		}
		for name := range l.dev.MIGPlacements {
			offered[name] = appendOnce(offered[name], l.node)
		}
		if geo := gpu.GeometryFor(l.dev.Model, l.dev.Memory); geo != nil && len(l.dev.MIGPlacements) == 0 {
			for _, p := range geo.Profiles {
				offered[p.Name] = appendOnce(offered[p.Name], l.node)
			}
		}
	}
	return offers("the profiles offered are", offered, "no GPU in MIG mode offers any profile")
}

func existingInstances(devs []located) string {
	have := map[string][]string{}
	for _, l := range devs {
		for _, in := range l.dev.MIGInstances {
			have[in.Profile] = appendOnce(have[in.Profile], l.node)
		}
	}
	for _, nodes := range have {
		sort.Strings(nodes)
	}
	return offers("the instances that exist are", have, "no instance exists")
}
