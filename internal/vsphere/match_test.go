package vsphere

import (
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

func TestMatch(t *testing.T) {
	vm := func(name, host, uuid string) *api.VSphereVM {
		return &api.VSphereVM{ID: "id-" + name, Name: name, Host: host, Cluster: "c1", UUID: uuid, Datastores: []string{"ds1", "ds2"}}
	}
	a := vm("a", "h1", "420c5b2e-1111-2222-3333-444455556666")
	b := vm("b", "h2", "420c5b2e-aaaa-bbbb-cccc-ddddeeeeffff")
	clone := vm("b-clone", "h3", b.UUID)
	tmpl := vm("tmpl", "h1", "11111111-2222-3333-4444-555555555555")
	tmpl.Template = true
	vms := []VMRef{{"vc", a}, {"vc", b}, {"vc2", clone}, {"vc", tmpl}}
	cases := []struct {
		name      string
		nodes     []NodeUUID
		wantHost  map[string]string // node ID → host; absent: unmatched
		conflicts []string          // substrings, one per conflict
	}{
		{"exact", []NodeUUID{{"n1", "n1", a.UUID}}, map[string]string{"n1": "h1"}, nil},
		{"upper case and no dashes", []NodeUUID{{"n1", "n1", strings.ToUpper(strings.ReplaceAll(a.UUID, "-", ""))}}, map[string]string{"n1": "h1"}, nil},
		{"SMBIOS byte order of old VM hardware", []NodeUUID{{"n1", "n1", "2e5b0c42-1111-2222-3333-444455556666"}}, map[string]string{"n1": "h1"}, nil},
		{"two nodes report one UUID", []NodeUUID{{"n1", "n1", a.UUID}, {"n2", "n2", a.UUID}}, map[string]string{}, []string{"reported by 2 nodes (n1, n2)"}},
		{"one UUID, two VMs", []NodeUUID{{"n1", "n1", b.UUID}}, map[string]string{}, []string{"belongs to 2 VMs (vc/b, vc2/b-clone)"}},
		{"template never matches", []NodeUUID{{"n1", "n1", tmpl.UUID}}, map[string]string{}, nil},
		{"no UUID", []NodeUUID{{"n1", "n1", ""}}, map[string]string{}, nil},
		{"unknown UUID", []NodeUUID{{"n1", "n1", "99999999-2222-3333-4444-555555555555"}}, map[string]string{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := Match(tc.nodes, vms)
			if len(m.Attrs) != len(tc.wantHost) {
				t.Fatalf("matched %v, want hosts %v", m.Attrs, tc.wantHost)
			}
			for id, host := range tc.wantHost {
				at := m.Attrs[id]
				if at[api.AttrVSphereHost] != host || at[api.AttrVSphereCluster] != "c1" || at[api.AttrVSphereDatastore] != "ds1" || at[api.AttrVSphereVCenter] != "vc" {
					t.Errorf("node %s: %v", id, at)
				}
			}
			if len(m.Conflicts) != len(tc.conflicts) {
				t.Fatalf("conflicts %q, want %q", m.Conflicts, tc.conflicts)
			}
			for i, c := range tc.conflicts {
				if !strings.Contains(m.Conflicts[i], c) {
					t.Errorf("conflict %q lacks %q", m.Conflicts[i], c)
				}
			}
		})
	}
}

func TestDiff(t *testing.T) {
	now := time.Unix(1000, 0)
	base := func() *Inventory {
		return &Inventory{
			Hosts: []api.VSphereHost{{ID: "host-1", Name: "h1", ConnectionState: "connected"}, {ID: "host-2", Name: "h2", ConnectionState: "connected"}},
			VMs:   []api.VSphereVM{{ID: "vm-1", Name: "v1", Host: "h1", PowerState: "poweredOn"}, {ID: "vm-2", Name: "v2", Host: "h2", PowerState: "poweredOn"}},
		}
	}
	cases := []struct {
		name string
		edit func(*Inventory)
		want []string // type/name
	}{
		{"nothing", func(*Inventory) {}, nil},
		{"power off", func(i *Inventory) { i.VMs[0].PowerState = "poweredOff" }, []string{"VMPoweredOff/v1"}},
		{"suspend", func(i *Inventory) { i.VMs[1].PowerState = "suspended" }, []string{"VMSuspended/v2"}},
		{"vMotion", func(i *Inventory) { i.VMs[0].Host = "h2" }, []string{"VMMigrated/v1"}},
		{"maintenance", func(i *Inventory) { i.Hosts[1].Maintenance = true }, []string{"HostEnteredMaintenance/h2"}},
		{"disconnected", func(i *Inventory) { i.Hosts[0].ConnectionState = "notResponding" }, []string{"HostDisconnected/h1"}},
		{"removed and added", func(i *Inventory) {
			i.VMs = i.VMs[1:]
			i.Hosts = append(i.Hosts, api.VSphereHost{ID: "host-3", Name: "h3"})
		}, []string{"HostAdded/h3", "VMRemoved/v1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := base()
			tc.edit(cur)
			var got []string
			for _, c := range Diff("vc", base(), cur, now) {
				got = append(got, c.Type+"/"+c.Name)
				if c.VCenter != "vc" || !c.Time.Equal(now) || c.Message == "" {
					t.Errorf("change %+v", c)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			// Back again gives the opposite changes, as many.
			if back := Diff("vc", cur, base(), now); len(back) != len(tc.want) {
				t.Errorf("reverse: %d changes, want %d", len(back), len(tc.want))
			}
		})
	}
	if Diff("vc", nil, base(), now) != nil {
		t.Error("the first inventory must make no changes")
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, 64 * time.Second}, {8, 2 * time.Minute}, {100, 2 * time.Minute}} {
		if got := Backoff(tc.failures, time.Second, 2*time.Minute); got != tc.want {
			t.Errorf("Backoff(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func TestToSample(t *testing.T) {
	s := ToSample(time.Unix(0, 0), map[string]int64{
		"cpu.usage.average": 2550, "cpu.ready.summation": 4000, "mem.usage.average": 5000,
		"mem.vmmemctl.average": 2048, "mem.swapped.average": 1024, "disk.maxTotalLatency.latest": 7, "net.usage.average": 300,
	}, 2, RealTimeInterval)
	want := api.VSphereSample{Time: time.Unix(0, 0), CPUUsage: 25.5, CPUReady: 10, MemUsage: 50, BalloonMiB: 2, SwappedMiB: 1, DiskLatencyMs: 7, NetKBps: 300}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

func TestHistoryBounded(t *testing.T) {
	h := NewHistory(3, 10*time.Second)
	for i := range 10 {
		h.Add("vm-1", api.VSphereSample{Time: time.Unix(int64(i*10), 0), CPUUsage: float32(i)})
		h.Add("vm-1", api.VSphereSample{Time: time.Unix(int64(i*10+1), 0), CPUUsage: -1}) // within the interval: dropped
	}
	got := h.Get("vm-1")
	if len(got) != 3 || got[0].CPUUsage != 7 || got[2].CPUUsage != 9 {
		t.Fatalf("history %+v", got)
	}
	h.Forget(func(string) bool { return false })
	if h.Entities() != 0 {
		t.Fatal("Forget kept an entity")
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"https://vc.example.com/sdk", "https://vc", "http://10.0.0.1:8989/sdk", "vc.example.com", "https://u:p@vc/sdk", "", "https://[::1]:443/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of two lines: %q", err)
			}
			return
		}
		if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Path == "" {
			t.Errorf("ParseURL(%q) accepted %v", s, u)
		}
	})
}
