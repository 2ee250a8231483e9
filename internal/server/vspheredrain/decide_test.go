package vspheredrain

import (
	"reflect"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
)

const (
	uuidA = "4210a4b8-1111-2222-3333-444455556666"
	uuidB = "4210a4b8-aaaa-bbbb-cccc-ddddeeeeffff"
)

func node(id, uuid string, attrs map[string]string) *api.Node {
	a := map[string]string{api.AttrBIOSUUID: uuid}
	for k, v := range attrs {
		a[k] = v
	}
	return &api.Node{ID: id, Name: "node-" + id, Attributes: a}
}

func vm(vc, name, host, uuid string) vsphere.VMRef {
	return vsphere.VMRef{VCenter: vc, VM: &api.VSphereVM{ID: "vm-" + name, Name: name, Host: host, UUID: uuid}}
}

func on(vc, vmName, host string) map[string]string {
	return map[string]string{api.AttrVSphereVCenter: vc, api.AttrVSphereVM: vmName, api.AttrVSphereHost: host}
}

func set(keys ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// summary is a Decision with nodes named by ID, for comparing.
type summary struct {
	attrs     map[string]map[string]string
	drains    []string
	forget    []string
	conflicts int
}

func summarize(d Decision) summary {
	s := summary{attrs: map[string]map[string]string{}, forget: d.Forget, conflicts: len(d.NewConflicts)}
	for _, a := range d.Attrs {
		s.attrs[a.Node.ID] = a.Want
	}
	for _, st := range d.Drains {
		s.drains = append(s.drains, st.Key)
	}
	return s
}

func TestDecide(t *testing.T) {
	vc1 := World{Conns: set("vc1"), Known: set("vc1"), DrainOn: set("vc1"), Maint: set(), VMs: []vsphere.VMRef{vm("vc1", "web-1", "esx-1", uuidA)}}
	inMaint := vc1
	inMaint.Maint = set("vc1/esx-1")
	noDrain := inMaint
	noDrain.DrainOn = set()
	unread := World{Conns: set("vc1"), Known: set(), DrainOn: set(), Maint: set()}
	removed := World{Conns: set(), Known: set(), DrainOn: set(), Maint: set()}
	clones := vc1
	clones.VMs = append(clones.VMs, vm("vc1", "web-1-clone", "esx-2", uuidA))
	draining := node("n1", uuidA, on("vc1", "web-1", "esx-1"))
	draining.Drain = &api.Drain{StartedAt: time.Unix(0, 0)}
	const key = "n1/vc1/esx-1"

	for _, tc := range []struct {
		name     string
		w        World
		nodes    []*api.Node
		reported []string
		drained  map[string]bool
		want     summary
	}{
		{name: "a node is matched to its VM and gets its attributes",
			w: vc1, nodes: []*api.Node{node("n1", uuidA, nil), node("n2", uuidB, nil)},
			want: summary{attrs: map[string]map[string]string{"n1": on("vc1", "web-1", "esx-1")}}},
		{name: "a node already carrying them changes nothing",
			w: vc1, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))},
			want: summary{attrs: map[string]map[string]string{}}},
		{name: "a vCenter not read yet: the node keeps what it said",
			w: unread, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))},
			want: summary{attrs: map[string]map[string]string{}}},
		{name: "a removed connection: its attributes go",
			w: removed, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))},
			want: summary{attrs: map[string]map[string]string{"n1": {}}}},
		{name: "its host enters maintenance: the node is drained",
			w: inMaint, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))},
			want: summary{attrs: map[string]map[string]string{}, drains: []string{key}}},
		{name: "drained once per maintenance",
			w: inMaint, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))}, drained: set(key),
			want: summary{attrs: map[string]map[string]string{}}},
		{name: "a node draining already is left alone",
			w: inMaint, nodes: []*api.Node{draining},
			want: summary{attrs: map[string]map[string]string{}}},
		{name: "a connection that does not drain on maintenance",
			w: noDrain, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))},
			want: summary{attrs: map[string]map[string]string{}}},
		{name: "the host leaves maintenance: the drain is forgotten, so the next one drains again",
			w: vc1, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))}, drained: set(key),
			want: summary{attrs: map[string]map[string]string{}, forget: []string{key}}},
		{name: "a UUID two VMs share matches nothing and is reported once",
			w: clones, nodes: []*api.Node{node("n1", uuidA, on("vc1", "web-1", "esx-1"))},
			want: summary{attrs: map[string]map[string]string{"n1": {}}, conflicts: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.w, tc.nodes, tc.reported, tc.drained)
			if got := summarize(d); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decision %+v\nwant     %+v", got, tc.want)
			}
			// Reported conflicts are not reported again.
			if again := Decide(tc.w, tc.nodes, d.Match.Conflicts, tc.drained); len(again.NewConflicts) != 0 {
				t.Errorf("conflicts reported twice: %v", again.NewConflicts)
			}
		})
	}
}
