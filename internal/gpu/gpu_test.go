package gpu

import (
	"errors"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func TestGeometryFor(t *testing.T) {
	cases := map[string]struct {
		mem  int
		want *Geometry
	}{
		"NVIDIA A100-SXM4-40GB":  {40960, A100_40GB},
		"NVIDIA A100-SXM4-80GB":  {81920, A100_80GB},
		"NVIDIA A100 80GB PCIe":  {81920, A100_80GB},
		"NVIDIA A100-PCIE":       {81920, A100_80GB},
		"NVIDIA H100 80GB HBM3":  {81559, H100_80GB},
		"NVIDIA H100 NVL":        {95830, nil},
		"NVIDIA H200":            {143771, H200_141GB},
		"NVIDIA A30":             {24576, A30_24GB},
		"Tesla T4":               {15360, nil},
		"NVIDIA GeForce RTX4090": {24564, nil},
	}
	for model, c := range cases {
		if got := GeometryFor(model, c.mem); got != c.want {
			t.Errorf("%s: got %v want %v", model, name(got), name(c.want))
		}
	}
}

func name(g *Geometry) string {
	if g == nil {
		return "nil"
	}
	return g.Name
}

// The tables must agree with MIG.md's rules: every legal slot inside the
// GPU, sizes that tile, compute within the GPU.
func TestGeometryTablesConsistent(t *testing.T) {
	for _, g := range Geometries() {
		for _, p := range g.Profiles {
			if p.Compute > g.ComputeSlices || p.Size > g.MemorySlices || p.Max < 1 {
				t.Errorf("%s %s: compute %d size %d max %d", g.Name, p.Name, p.Compute, p.Size, p.Max)
			}
			for _, s := range p.Starts {
				if s < 0 || s+p.Size > g.MemorySlices {
					t.Errorf("%s %s: start %d size %d outside %d slices", g.Name, p.Name, s, p.Size, g.MemorySlices)
				}
			}
			if !ValidProfileName(p.Name) {
				t.Errorf("%s: bad profile name %q", g.Name, p.Name)
			}
		}
	}
	if p := H100_80GB.Profile("3g.40gb"); p == nil || p.Size != 4 || p.Compute != 3 || len(p.Starts) != 2 {
		t.Fatalf("H100 3g.40gb: %+v", p)
	}
	if p := A30_24GB.Profile("2g.12gb"); p == nil || p.Size != 2 || p.Starts[1] != 2 {
		t.Fatalf("A30 2g.12gb: %+v", p)
	}
}

func migDevice(model string, mem int, managed bool, ins ...api.MIGInstance) Device {
	return NewDevices([]api.GPUDevice{{UUID: "g0", Model: model, Memory: mem, MIGEnabled: true, MIGManaged: managed, MIGInstances: ins}})[0]
}

func TestBestStartKeepsLargeProfilesPlaceable(t *testing.T) {
	d := migDevice("NVIDIA A100-SXM4-40GB", 40960, true)
	p, _ := d.Profile("1g.5gb")
	if s, ok := d.BestStart(&p); !ok || s != 6 {
		t.Fatalf("1g.5gb on an empty A100: start %d, want 6 (keeps 4g, 3g and all 2g slots)", s)
	}
	p3, _ := d.Profile("3g.20gb")
	if s, ok := d.BestStart(&p3); !ok || s != 4 {
		t.Fatalf("3g.20gb on an empty A100: start %d, want 4 (keeps 4g.20gb at 0)", s)
	}
	// Fill with 1g.5gb: each goes where it hurts least, and no two overlap.
	var used Slices
	for i := 0; i < 7; i++ {
		s, ok := d.BestStart(&p)
		if !ok {
			t.Fatalf("instance %d: no slot", i)
		}
		if used&SliceRange(s, 1) != 0 {
			t.Fatalf("slot %d reused", s)
		}
		used |= SliceRange(s, 1)
		if err := d.AddMIG("1g.5gb", s, 1, "", true); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := d.BestStart(&p); ok {
		t.Fatal("an eighth 1g.5gb fits a 7-slice GPU")
	}
}

func TestMIGRules(t *testing.T) {
	d := migDevice("NVIDIA H100 80GB HBM3", 81559, true)
	if err := d.AddMIG("3g.40gb", 2, 4, "", true); !errors.Is(err, ErrMIGPlacement) {
		t.Fatalf("3g.40gb at 2 is not a legal slot: %v", err)
	}
	if err := d.AddMIG("3g.40gb", 4, 4, "", true); err != nil {
		t.Fatal(err)
	}
	if err := d.AddMIG("2g.20gb", 4, 2, "", true); !errors.Is(err, ErrMIGPlacement) {
		t.Fatalf("overlap accepted: %v", err)
	}
	if err := d.AddMIG("1g.10gb+me", 0, 1, "", true); err != nil {
		t.Fatal(err)
	}
	if err := d.AddMIG("1g.10gb+me", 1, 1, "", true); !errors.Is(err, ErrMIGPlacement) {
		t.Fatalf("second +me accepted: %v", err)
	}
	if err := d.AddMIG("4g.40gb", 0, 4, "", true); !errors.Is(err, ErrMIGPlacement) {
		t.Fatalf("4g.40gb over the +me instance accepted: %v", err)
	}
	d.RemoveMIG(4, 4, "")
	if d.Used != SliceRange(0, 1) || d.Compute != 1 {
		t.Fatalf("planned instance not freed: used %08b compute %d", d.Used, d.Compute)
	}
}

func TestNodePlacementsOverrideTable(t *testing.T) {
	d := NewDevices([]api.GPUDevice{{UUID: "g", Model: "NVIDIA H100 80GB HBM3", Memory: 81559, MIGEnabled: true, MIGManaged: true,
		MIGPlacements: map[string][]int{"1g.10gb": {0, 1}}}})[0]
	p, _ := d.Profile("1g.10gb")
	if s, ok := d.BestStart(&p); !ok || s != 1 {
		t.Fatalf("override ignored: %d", s)
	}
	if err := d.AddMIG("1g.10gb", 6, 1, "", true); !errors.Is(err, ErrMIGPlacement) {
		t.Fatalf("slot 6 is not in the node's placements: %v", err)
	}
}

func TestExistingInstances(t *testing.T) {
	d := migDevice("NVIDIA A100-SXM4-40GB", 40960, false, api.MIGInstance{UUID: "MIG-a", Profile: "3g.20gb", Start: 4, Size: 4})
	if i := d.FreeInstance("3g.20gb"); i != 0 {
		t.Fatalf("free instance %d", i)
	}
	if err := d.AddMIG("3g.20gb", 4, 4, "MIG-a", true); err != nil {
		t.Fatal(err)
	}
	if err := d.AddMIG("3g.20gb", 4, 4, "MIG-a", true); !errors.Is(err, ErrGPUInUse) {
		t.Fatalf("instance used twice: %v", err)
	}
	d.RemoveMIG(4, 4, "MIG-a")
	if d.Used != SliceRange(4, 4) || len(d.Instances) != 1 {
		t.Fatal("a reported instance must stay when its user leaves")
	}
}

func TestSharesAndForms(t *testing.T) {
	d := NewDevices([]api.GPUDevice{{UUID: "g", Model: "T4", Memory: 16000}})[0]
	if err := d.AddShare(600, ShareMemory(600, 0, d.Memory), true); err != nil {
		t.Fatal(err)
	}
	if d.FreeMemory != 6400 {
		t.Fatalf("default share memory: free %d", d.FreeMemory)
	}
	if err := d.AddShare(500, 1, true); !errors.Is(err, ErrShareOver) {
		t.Fatalf("1100 milli accepted: %v", err)
	}
	if err := d.AddWhole(true); !errors.Is(err, ErrFormConflict) {
		t.Fatalf("whole on a shared GPU accepted: %v", err)
	}
	d.RemoveShare(600, 9600)
	if err := d.AddWhole(true); err != nil {
		t.Fatal(err)
	}
	if err := d.AddShare(1, 1, true); !errors.Is(err, ErrFormConflict) {
		t.Fatalf("share on a whole GPU accepted: %v", err)
	}
}

func TestMatchModel(t *testing.T) {
	for _, c := range []struct {
		p, m string
		ok   bool
	}{
		{"H100*", "NVIDIA H100 80GB HBM3", true},
		{"h100*", "NVIDIA H100 80GB HBM3", true},
		{"*H100*", "NVIDIA H100 80GB HBM3", true},
		{"A100*", "NVIDIA H100 80GB HBM3", false},
		{"V100M16|V100M32", "V100M32", true},
		{"V100M16|V100M32", "V100M3", false},
		{"G?", "G2", true},
		{"", "anything", true},
		{"T4", "Tesla T4", false},
		{"*T4", "Tesla T4", true},
	} {
		if got := MatchModel(c.p, c.m); got != c.ok {
			t.Errorf("MatchModel(%q, %q) = %v", c.p, c.m, got)
		}
	}
}

func TestPickConnectedPrefersNVLink(t *testing.T) {
	gs := make([]api.GPUDevice, 4)
	for i := range gs {
		gs[i] = api.GPUDevice{UUID: string(rune('a' + i)), NUMANode: i / 2}
	}
	gs[1].NVLinkPeers = []string{"d"}
	gs[3].NVLinkPeers = []string{"b"}
	devs := NewDevices(gs)
	got := PickConnected(devs, []int{0, 1, 2, 3}, 2, nil)
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("picked %v, want the NVLink pair [1 3]", got)
	}
}

func TestParseCC(t *testing.T) {
	if v, ok := ParseCC("8.6"); !ok || v != 806 {
		t.Fatal(v)
	}
	if v, ok := ParseCC("10.0"); !ok || v <= 906 {
		t.Fatal(v)
	}
	if _, ok := ParseCC("x"); ok {
		t.Fatal("parsed x")
	}
}
