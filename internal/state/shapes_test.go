package state

import (
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func TestShapesShareOnlyEqualPlainResources(t *testing.T) {
	plain := func(cpu, mem int) map[string]*api.AllocatedResources {
		return map[string]*api.AllocatedResources{"app": {CPU: cpu, Memory: mem}, "side": {CPU: 10, Memory: 16}}
	}
	same := func(a, b map[string]*api.AllocatedResources) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	sh := shapes{}
	first := sh.share(plain(100, 64))
	for _, c := range []struct {
		name  string
		r     map[string]*api.AllocatedResources
		share bool
	}{
		{"same shape", plain(100, 64), true},
		{"other cpu", plain(200, 64), false},
		{"other memory", plain(100, 128), false},
		{"other task name", map[string]*api.AllocatedResources{"web": {CPU: 100, Memory: 64}, "side": {CPU: 10, Memory: 16}}, false},
		{"one task fewer", map[string]*api.AllocatedResources{"app": {CPU: 100, Memory: 64}}, false},
		{"with a port", map[string]*api.AllocatedResources{"app": {CPU: 100, Memory: 64, Ports: []api.AllocatedPort{{Name: "http", Host: 20000}}}, "side": {CPU: 10, Memory: 16}}, false},
		{"with a GPU", map[string]*api.AllocatedResources{"app": {CPU: 100, Memory: 64, GPU: &api.AllocatedGPU{Devices: []string{"GPU-0"}}}, "side": {CPU: 10, Memory: 16}}, false},
	} {
		got := sh.share(c.r)
		if same(got, first) != c.share {
			t.Errorf("%s: shared with the first map = %v, want %v", c.name, same(got, first), c.share)
		}
		if !reflect.DeepEqual(got, c.r) {
			t.Errorf("%s: share changed the resources: %v, want %v", c.name, got, c.r)
		}
	}
	// A map holding a port is never remembered: the next equal one is its own.
	port := func() map[string]*api.AllocatedResources {
		return map[string]*api.AllocatedResources{"app": {Ports: []api.AllocatedPort{{Name: "http", Host: 20000}}}}
	}
	if a, b := sh.share(port()), sh.share(port()); same(a, b) {
		t.Error("maps with ports were shared")
	}
	if sh.share(nil) != nil {
		t.Error("nil resources became non-nil")
	}
}

func TestShapesStopRememberingAtTheBound(t *testing.T) {
	sh := shapes{}
	for i := range maxShapes + 10 {
		sh.share(map[string]*api.AllocatedResources{"t": {CPU: i}})
	}
	if len(sh) != maxShapes {
		t.Fatalf("remembered %d shapes, want the bound %d", len(sh), maxShapes)
	}
}
