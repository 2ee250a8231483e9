package gpu

import (
	"errors"
	"fmt"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
)

// Form says which of the three request forms holds a GPU. A device is held
// by one form at a time: whole-GPU, MIG and share users never mix.
type Form uint8

const (
	FormNone  Form = iota // nobody uses the device
	FormWhole             // one allocation owns the whole GPU
	FormMIG               // MIG instances (only on MIG-enabled GPUs)
	FormShare             // fractional shares of compute and memory
)

func (f Form) String() string {
	switch f {
	case FormWhole:
		return "whole"
	case FormMIG:
		return "mig"
	case FormShare:
		return "share"
	}
	return "none"
}

// Errors returned by the strict (Fit) forms of the Add methods. Each is
// wrapped with the device and the amounts involved.
var (
	// ErrFormConflict: the device is already held by another form, or the
	// form does not suit its MIG mode (whole and share need MIG off, MIG
	// needs MIG on).
	ErrFormConflict = errors.New("GPU held by another form")
	// ErrGPUInUse: a whole GPU or a MIG instance handed out twice.
	ErrGPUInUse = errors.New("GPU handed out twice")
	// ErrShareOver: shares on one GPU exceed 1000 milli or its memory.
	ErrShareOver = errors.New("GPU shares over capacity")
	// ErrMIGPlacement: a MIG instance at an illegal position, overlapping
	// another instance, or beyond the GPU's compute or instance limits.
	ErrMIGPlacement = errors.New("illegal MIG placement")
)

// Slices is a set of MIG memory slices: bit i is slice i.
type Slices uint16

// SliceRange is the set of size slices from start.
func SliceRange(start, size int) Slices {
	if size <= 0 || start < 0 || start+size > 16 {
		return 0
	}
	return Slices(((1 << size) - 1) << start)
}

// Instance is a MIG GPU instance on a device: reported by the node, or
// planned by an allocation that asked the agent to create it.
type Instance struct {
	UUID     string
	Profile  string
	Start    int
	Size     int
	Compute  int
	MediaExt bool
	Users    int  // allocations using it (0 or 1 when the state is legal)
	Planned  bool // not reported by the node: exists only for its users
}

// Device is one GPU with what allocations hold of it. The scheduler keeps
// one per GPU of every node and updates it incrementally; scorers read it
// and must never modify it.
//
// FreeMilli and FreeMemory describe non-MIG devices: 1000 and the device's
// memory when idle, reduced by each share and zeroed by a whole-GPU user.
// On a MIG-enabled device FreeMilli is the fraction of compute slices not
// taken by instances (in thousandths) and FreeMemory the memory of the
// free memory slices.
type Device struct {
	Index           int    // position in api.Node.GPUs
	UUID            string //
	Model           string //
	Memory          int    // MiB
	CC              int    // compute capability as major*100+minor; 0 unknown
	NUMA            int    //
	Healthy         bool   //
	MIGEnabled      bool   //
	MIGManaged      bool   // the agent may create instances
	SharingEnforced bool   // MPS enforces share limits
	Passthrough     bool   // bound to vfio-pci: whole, and for VMs only
	Peers           []int  // indices of NVLink peers on the same node
	Geometry        *Geometry
	Placements      map[string][]int // node-reported legal starts, by profile

	Form       Form
	Users      int // allocations holding the device (or instances on it)
	FreeMilli  int
	FreeMemory int
	Used       Slices // MIG memory slices taken by instances
	Compute    int    // MIG compute slices taken by instances
	Instances  []Instance
}

// NewDevices builds the accounting of a node's GPUs, all free, with the
// node's reported MIG instances in place and NVLink peers resolved to
// indices.
func NewDevices(gs []api.GPUDevice) []Device {
	out := make([]Device, len(gs))
	byUUID := make(map[string]int, len(gs))
	for i := range gs {
		byUUID[gs[i].UUID] = i
	}
	for i := range gs {
		g := &gs[i]
		d := &out[i]
		cc, _ := ParseCC(g.ComputeCapability)
		*d = Device{
			Index: i, UUID: g.UUID, Model: g.Model, Memory: g.Memory, CC: cc, NUMA: g.NUMANode,
			Healthy: !g.Unhealthy, MIGEnabled: g.MIGEnabled, MIGManaged: g.MIGManaged,
			SharingEnforced: g.SharingEnforced, Passthrough: g.Passthrough, Placements: g.MIGPlacements,
			FreeMilli: 1000, FreeMemory: g.Memory,
		}
		for _, p := range g.NVLinkPeers {
			if j, ok := byUUID[p]; ok && j != i {
				d.Peers = append(d.Peers, j)
			}
		}
		if g.MIGEnabled {
			d.Geometry = GeometryFor(g.Model, g.Memory)
			for _, in := range g.MIGInstances {
				c, _ := ProfileCompute(in.Profile)
				if p := d.Geometry.Profile(in.Profile); p != nil {
					c = p.Compute
				}
				d.Instances = append(d.Instances, Instance{
					UUID: in.UUID, Profile: in.Profile, Start: in.Start, Size: in.Size,
					Compute: c, MediaExt: isMediaExt(in.Profile),
				})
				d.Used |= SliceRange(in.Start, in.Size)
				d.Compute += c
			}
			sort.SliceStable(d.Instances, func(a, b int) bool { return d.Instances[a].Start < d.Instances[b].Start })
			d.migFree()
		}
	}
	return out
}

func isMediaExt(profile string) bool {
	return len(profile) > 3 && profile[len(profile)-3:] == "+me"
}

func (d *Device) memorySlices() int {
	if d.Geometry != nil {
		return d.Geometry.MemorySlices
	}
	return 8
}

func (d *Device) computeSlices() int {
	if d.Geometry != nil {
		return d.Geometry.ComputeSlices
	}
	return 7
}

// migFree refreshes FreeMilli and FreeMemory of a MIG-enabled device.
func (d *Device) migFree() {
	cs, ms := d.computeSlices(), d.memorySlices()
	d.FreeMilli = 1000 * (cs - d.Compute) / cs
	free := 0
	for i := 0; i < ms; i++ {
		if d.Used&(1<<i) == 0 {
			free++
		}
	}
	d.FreeMemory = d.Memory * free / ms
}

// CanWhole reports whether the device can be handed out whole now.
func (d *Device) CanWhole() bool {
	return d.Healthy && !d.MIGEnabled && d.Users == 0
}

// CanShare reports whether a share of milli and memory MiB (already
// resolved with ShareMemory) fits on the device now.
func (d *Device) CanShare(milli, memory int) bool {
	return d.Healthy && !d.MIGEnabled && (d.Form == FormNone || d.Form == FormShare) &&
		d.FreeMilli >= milli && d.FreeMemory >= memory
}

// AddWhole hands the device out whole. With strict set it refuses (and
// changes nothing) when that would break a rule; otherwise it accounts
// whatever it is told, as the scheduler does for allocations that exist.
func (d *Device) AddWhole(strict bool) error {
	if strict {
		if d.MIGEnabled {
			return fmt.Errorf("GPU %s is in MIG mode and cannot be used whole: %w", d.UUID, ErrFormConflict)
		}
		if d.Users > 0 {
			if d.Form == FormWhole {
				return fmt.Errorf("GPU %s: %w", d.UUID, ErrGPUInUse)
			}
			return fmt.Errorf("GPU %s is held by %s users: %w", d.UUID, d.Form, ErrFormConflict)
		}
	}
	if d.Users == 0 {
		d.Form = FormWhole
	}
	d.Users++
	d.FreeMilli -= 1000
	d.FreeMemory -= d.Memory
	return nil
}

// RemoveWhole undoes AddWhole.
func (d *Device) RemoveWhole() {
	d.Users--
	d.FreeMilli += 1000
	d.FreeMemory += d.Memory
	d.settle()
}

// AddShare accounts a share of milli thousandths and memory MiB.
func (d *Device) AddShare(milli, memory int, strict bool) error {
	if strict {
		switch {
		case d.MIGEnabled:
			return fmt.Errorf("GPU %s is in MIG mode and cannot be shared: %w", d.UUID, ErrFormConflict)
		case d.Users > 0 && d.Form != FormShare:
			return fmt.Errorf("GPU %s is held by a %s user: %w", d.UUID, d.Form, ErrFormConflict)
		case milli <= 0 || milli > 1000 || memory < 0:
			return fmt.Errorf("GPU %s: share of %d milli and %d MiB: %w", d.UUID, milli, memory, ErrShareOver)
		case d.FreeMilli < milli:
			return fmt.Errorf("GPU %s: %d milli asked, %d free: %w", d.UUID, milli, d.FreeMilli, ErrShareOver)
		case d.FreeMemory < memory:
			return fmt.Errorf("GPU %s: %d MiB asked, %d free: %w", d.UUID, memory, d.FreeMemory, ErrShareOver)
		}
	}
	if d.Users == 0 {
		d.Form = FormShare
	}
	d.Users++
	d.FreeMilli -= milli
	d.FreeMemory -= memory
	return nil
}

// RemoveShare undoes AddShare.
func (d *Device) RemoveShare(milli, memory int) {
	d.Users--
	d.FreeMilli += milli
	d.FreeMemory += memory
	d.settle()
}

func (d *Device) settle() {
	if d.Users <= 0 {
		d.Users = 0
		d.Form = FormNone
		if !d.MIGEnabled {
			d.FreeMilli, d.FreeMemory = 1000, d.Memory
		}
	}
}

// Profile returns the geometry of a MIG profile on this device, with the
// start slots the node reported when it reported any. A profile the
// geometry does not know is still usable when the node reports its starts
// and an instance of it exists to give its size.
func (d *Device) Profile(name string) (Profile, bool) {
	var p Profile
	starts, override := d.Placements[name]
	if gp := d.Geometry.Profile(name); gp != nil {
		p = *gp
	} else {
		if !override {
			return Profile{}, false
		}
		p = Profile{Name: name, Max: d.memorySlices(), MediaExt: isMediaExt(name)}
		p.Compute, _ = ProfileCompute(name)
		for _, in := range d.Instances {
			if in.Profile == name {
				p.Size = in.Size
				break
			}
		}
		if p.Size == 0 {
			return Profile{}, false
		}
	}
	if override {
		p.Starts = starts
	}
	return p, true
}

// FreeInstance returns the index in Instances of an existing, unused
// instance of the profile (the lowest start first), or -1.
func (d *Device) FreeInstance(profile string) int {
	for i := range d.Instances {
		in := &d.Instances[i]
		if in.Users == 0 && !in.Planned && in.Profile == profile {
			return i
		}
	}
	return -1
}

func (d *Device) count(profile string) (n int, mediaExt bool) {
	for i := range d.Instances {
		if d.Instances[i].Profile == profile {
			n++
		}
		if d.Instances[i].MediaExt {
			mediaExt = true
		}
	}
	return
}

// CanCreate reports whether a new instance of p fits at start: a legal
// slot, inside the GPU, on free memory slices, within the compute slices,
// the profile's instance limit and the one-"+me"-per-GPU rule.
func (d *Device) CanCreate(p *Profile, start int) bool {
	if !d.legalStart(p, start) {
		return false
	}
	if d.Used&SliceRange(start, p.Size) != 0 || d.Compute+p.Compute > d.computeSlices() {
		return false
	}
	n, me := d.count(p.Name)
	return n < p.Max && !(p.MediaExt && me)
}

func (d *Device) legalStart(p *Profile, start int) bool {
	if p.Size <= 0 || start < 0 || start+p.Size > d.memorySlices() {
		return false
	}
	for _, s := range p.Starts {
		if s == start {
			return true
		}
	}
	return false
}

// BestStart chooses where to create an instance of p: among the legal free
// slots, the one after which the largest profiles keep the most legal
// slots (compared largest profile first); ties go to the highest start,
// which keeps the low slots, where the large profiles start, free.
func (d *Device) BestStart(p *Profile) (int, bool) {
	best, found := -1, false
	var bestVec [16]int
	for _, s := range p.Starts {
		if !d.CanCreate(p, s) {
			continue
		}
		vec := d.placeable(d.Used|SliceRange(s, p.Size), d.Compute+p.Compute)
		if !found || vecLess(bestVec, vec) || (vec == bestVec && s > best) {
			best, bestVec, found = s, vec, true
		}
	}
	return best, found
}

// placeable counts, per profile of the geometry in table order (largest
// first; "+me" profiles skipped), the legal slots still free.
func (d *Device) placeable(used Slices, compute int) (vec [16]int) {
	if d.Geometry == nil {
		return
	}
	k := 0
	for i := range d.Geometry.Profiles {
		gp := &d.Geometry.Profiles[i]
		if gp.MediaExt || k == len(vec) {
			continue
		}
		p, _ := d.Profile(gp.Name)
		if compute+p.Compute <= d.computeSlices() {
			for _, s := range p.Starts {
				if s+p.Size <= d.memorySlices() && used&SliceRange(s, p.Size) == 0 {
					vec[k]++
				}
			}
		}
		k++
	}
	return
}

func vecLess(a, b [16]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// AddMIG accounts an allocation's use of a MIG instance of profile at
// start:size. It uses the node's instance with that UUID, or else the one
// at that position; when there is none, the allocation creates it
// (Planned), which takes its slices and compute. With strict set it
// refuses illegal or conflicting use.
func (d *Device) AddMIG(profile string, start, size int, uuid string, strict bool) error {
	if strict && !d.MIGEnabled {
		return fmt.Errorf("GPU %s is not in MIG mode: %w", d.UUID, ErrFormConflict)
	}
	i := d.findInstance(uuid, start, size)
	if i >= 0 {
		in := &d.Instances[i]
		if strict {
			if in.Users > 0 {
				return fmt.Errorf("MIG instance %s:%d on GPU %s: %w", in.Profile, in.Start, d.UUID, ErrGPUInUse)
			}
			if in.Profile != profile || in.Start != start || in.Size != size {
				return fmt.Errorf("GPU %s has a %s instance at %d:%d, not %s at %d:%d: %w",
					d.UUID, in.Profile, in.Start, in.Size, profile, start, size, ErrMIGPlacement)
			}
		}
		in.Users++
		d.Users++
		d.Form = FormMIG
		return nil
	}
	p, ok := d.Profile(profile)
	if strict {
		if !ok {
			return fmt.Errorf("GPU %s (%s) has no MIG profile %s: %w", d.UUID, d.Model, profile, ErrMIGPlacement)
		}
		if p.Size != size || !d.CanCreate(&p, start) {
			return fmt.Errorf("MIG %s at %d:%d on GPU %s (slices in use %08b, compute %d): %w",
				profile, start, size, d.UUID, d.Used, d.Compute, ErrMIGPlacement)
		}
	}
	c := p.Compute
	if !ok {
		c, _ = ProfileCompute(profile)
	}
	in := Instance{Profile: profile, Start: start, Size: size, Compute: c, MediaExt: isMediaExt(profile), Users: 1, Planned: true}
	j := sort.Search(len(d.Instances), func(k int) bool { return d.Instances[k].Start > start })
	d.Instances = append(d.Instances, Instance{})
	copy(d.Instances[j+1:], d.Instances[j:])
	d.Instances[j] = in
	d.Used |= SliceRange(start, size)
	d.Compute += c
	d.Users++
	d.Form = FormMIG
	d.migFree()
	return nil
}

func (d *Device) findInstance(uuid string, start, size int) int {
	if uuid != "" {
		for i := range d.Instances {
			if d.Instances[i].UUID == uuid {
				return i
			}
		}
	}
	for i := range d.Instances {
		if d.Instances[i].Start == start && d.Instances[i].Size == size {
			return i
		}
	}
	return -1
}

// RemoveMIG undoes AddMIG; a planned instance nobody uses any more is
// dropped and its slices freed.
func (d *Device) RemoveMIG(start, size int, uuid string) {
	i := d.findInstance(uuid, start, size)
	if i < 0 {
		return
	}
	in := &d.Instances[i]
	in.Users--
	d.Users--
	if in.Planned && in.Users <= 0 {
		d.Used &^= SliceRange(in.Start, in.Size)
		d.Compute -= in.Compute
		d.Instances = append(d.Instances[:i], d.Instances[i+1:]...)
		d.migFree()
	}
	if d.Users <= 0 {
		d.Users = 0
		d.Form = FormNone
	}
}

// Clone returns a deep copy of the device's accounting.
func (d *Device) Clone() Device {
	c := *d
	c.Instances = append([]Instance(nil), d.Instances...)
	return c
}

// PickConnected chooses count devices among eligible (indices into devs)
// so that the chosen set has the most NVLink connections, then the most
// pairs on the same NUMA node, then the lowest indices. It appends them to
// out and returns it; it returns out unchanged when there are too few.
func PickConnected(devs []Device, eligible []int, count int, out []int) []int {
	if count <= 0 || len(eligible) < count {
		return out
	}
	if count == 1 || count == len(eligible) {
		return append(out, eligible[:count]...)
	}
	var bestSet [64]int
	bestScore := -1
	var set [64]int
	if count > len(set) {
		return append(out, eligible[:count]...)
	}
	for _, seed := range eligible {
		set[0] = seed
		n, score := 1, 0
		for n < count {
			pick, pickGain := -1, -1
			for _, c := range eligible {
				if in(set[:n], c) {
					continue
				}
				gain := 0
				for _, s := range set[:n] {
					gain += affinity(devs, s, c)
				}
				if gain > pickGain {
					pick, pickGain = c, gain
				}
			}
			set[n] = pick
			n++
			score += pickGain
		}
		if score > bestScore {
			bestScore = score
			bestSet = set
		}
	}
	chosen := bestSet[:count]
	sort.Ints(chosen)
	return append(out, chosen...)
}

func in(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// affinity weighs a pair of devices: NVLink counts far more than NUMA.
func affinity(devs []Device, a, b int) int {
	w := 0
	if in(devs[a].Peers, b) || in(devs[b].Peers, a) {
		w += 4
	}
	if devs[a].NUMA == devs[b].NUMA {
		w++
	}
	return w
}
