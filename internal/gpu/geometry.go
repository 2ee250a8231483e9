package gpu

import (
	"strconv"
	"strings"
)

// Profile is one MIG GPU-instance profile of a GPU model: how many compute
// slices it takes, how many contiguous memory slices (Size), how many
// instances of it one GPU can hold, and the memory slices it may start at.
type Profile struct {
	Name     string // "3g.40gb"
	NVMLID   int    // NVML GPU-instance profile id
	Compute  int    // compute (SM) slices
	Size     int    // memory slices, contiguous
	Max      int    // instances of this profile per GPU
	Starts   []int  // legal first memory slices
	MediaExt bool   // a "+me" profile: at most one per GPU
}

// Geometry is the MIG layout of one GPU model: its memory and compute
// slices and the profiles it offers, largest first.
type Geometry struct {
	Name          string // "A100-40GB"
	MemorySlices  int
	ComputeSlices int
	Profiles      []Profile
}

// Profile returns the named profile, or nil when the model has none.
func (g *Geometry) Profile(name string) *Profile {
	if g == nil {
		return nil
	}
	for i := range g.Profiles {
		if g.Profiles[i].Name == name {
			return &g.Profiles[i]
		}
	}
	return nil
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// eightSlice builds the A100/H100/H200 geometry with the given profile
// names, largest first: 7g, 4g, 3g, 2g, 1g-double, 1g, 1g+me.
func eightSlice(name string, p7, p4, p3, p2, p1d, p1, p1me string) *Geometry {
	return &Geometry{
		Name: name, MemorySlices: 8, ComputeSlices: 7,
		Profiles: []Profile{
			{Name: p7, NVMLID: 0, Compute: 7, Size: 8, Max: 1, Starts: []int{0}},
			{Name: p4, NVMLID: 5, Compute: 4, Size: 4, Max: 1, Starts: []int{0}},
			{Name: p3, NVMLID: 9, Compute: 3, Size: 4, Max: 2, Starts: []int{0, 4}},
			{Name: p2, NVMLID: 14, Compute: 2, Size: 2, Max: 3, Starts: []int{0, 2, 4}},
			{Name: p1d, NVMLID: 15, Compute: 1, Size: 2, Max: 4, Starts: []int{0, 2, 4, 6}},
			{Name: p1, NVMLID: 19, Compute: 1, Size: 1, Max: 7, Starts: seq(7)},
			{Name: p1me, NVMLID: 20, Compute: 1, Size: 1, Max: 1, Starts: seq(7), MediaExt: true},
		},
	}
}

// The MIG geometries Gantry knows, from NVIDIA's MIG user guide (see
// shared/gpu/MIG.md). A node that reports its own placements through NVML
// (api.GPUDevice.MIGPlacements) overrides the start slots.
var (
	A100_40GB = &Geometry{
		Name: "A100-40GB", MemorySlices: 8, ComputeSlices: 7,
		Profiles: []Profile{
			{Name: "7g.40gb", NVMLID: 0, Compute: 7, Size: 8, Max: 1, Starts: []int{0}},
			{Name: "4g.20gb", NVMLID: 5, Compute: 4, Size: 4, Max: 1, Starts: []int{0}},
			{Name: "3g.20gb", NVMLID: 9, Compute: 3, Size: 4, Max: 2, Starts: []int{0, 4}},
			{Name: "2g.10gb", NVMLID: 14, Compute: 2, Size: 2, Max: 3, Starts: []int{0, 2, 4}},
			{Name: "1g.10gb", NVMLID: 15, Compute: 1, Size: 2, Max: 4, Starts: []int{0, 2, 4, 6}},
			{Name: "1g.5gb", NVMLID: 19, Compute: 1, Size: 1, Max: 7, Starts: seq(7)},
			{Name: "1g.5gb+me", NVMLID: 20, Compute: 1, Size: 1, Max: 1, Starts: seq(7), MediaExt: true},
		},
	}
	A100_80GB  = eightSlice("A100-80GB", "7g.80gb", "4g.40gb", "3g.40gb", "2g.20gb", "1g.20gb", "1g.10gb", "1g.10gb+me")
	H100_80GB  = eightSlice("H100-80GB", "7g.80gb", "4g.40gb", "3g.40gb", "2g.20gb", "1g.20gb", "1g.10gb", "1g.10gb+me")
	H200_141GB = eightSlice("H200-141GB", "7g.141gb", "4g.71gb", "3g.71gb", "2g.35gb", "1g.35gb", "1g.18gb", "1g.18gb+me")
	A30_24GB   = &Geometry{
		Name: "A30-24GB", MemorySlices: 4, ComputeSlices: 4,
		Profiles: []Profile{
			{Name: "4g.24gb", NVMLID: 0, Compute: 4, Size: 4, Max: 1, Starts: []int{0}},
			{Name: "2g.12gb", NVMLID: 5, Compute: 2, Size: 2, Max: 2, Starts: []int{0, 2}},
			{Name: "2g.12gb+me", NVMLID: 6, Compute: 2, Size: 2, Max: 1, Starts: []int{0, 2}, MediaExt: true},
			{Name: "1g.6gb", NVMLID: 14, Compute: 1, Size: 1, Max: 4, Starts: seq(4)},
			{Name: "1g.6gb+me", NVMLID: 21, Compute: 1, Size: 1, Max: 1, Starts: seq(4), MediaExt: true},
		},
	}
)

var geometries = []*Geometry{A100_40GB, A100_80GB, H100_80GB, H200_141GB, A30_24GB}

// Geometries lists every known geometry. The slice is shared: do not
// modify it.
func Geometries() []*Geometry { return geometries }

// GeometryFor returns the MIG geometry of a GPU from its model name as
// NVML reports it ("NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3") and
// its memory in MiB, or nil when the model is not MIG-capable or not
// known (for example the H100 NVL, whose profiles differ).
func GeometryFor(model string, memoryMiB int) *Geometry {
	m := strings.ToUpper(model)
	gib := memoryMiB / 1024
	switch {
	case strings.Contains(m, "A100"):
		switch {
		case strings.Contains(m, "80GB"):
			return A100_80GB
		case strings.Contains(m, "40GB"):
			return A100_40GB
		case memoryMiB > 0 && gib > 48:
			return A100_80GB
		default:
			return A100_40GB
		}
	case strings.Contains(m, "H100"):
		if strings.Contains(m, "NVL") || gib > 82 {
			return nil
		}
		return H100_80GB
	case strings.Contains(m, "H200"):
		return H200_141GB
	case strings.Contains(m, "A30"):
		return A30_24GB
	}
	return nil
}

// ProfileCompute returns the compute slices of a profile and of the whole
// GPU, from the known geometries, or by reading the leading "<n>g" of the
// name against a 7-slice GPU. It is used to count a MIG instance as a
// fraction of a GPU (queues, metrics).
func ProfileCompute(profile string) (slices, total int) {
	for _, g := range geometries {
		if p := g.Profile(profile); p != nil {
			return p.Compute, g.ComputeSlices
		}
	}
	if i := strings.IndexByte(profile, 'g'); i > 0 {
		if n, err := strconv.Atoi(profile[:i]); err == nil && n > 0 && n <= 7 {
			return n, 7
		}
	}
	return 0, 7
}

// ValidProfileName reports whether s looks like a MIG profile name:
// "<compute>g.<memory>gb" with an optional "+me" suffix.
func ValidProfileName(s string) bool {
	s = strings.TrimSuffix(s, "+me")
	i := strings.IndexByte(s, 'g')
	if i <= 0 || i > 2 || !strings.HasSuffix(s, "gb") || len(s) < i+4 || s[i+1] != '.' {
		return false
	}
	return allDigits(s[:i]) && allDigits(s[i+2:len(s)-2])
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
