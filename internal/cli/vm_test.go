package cli

import (
	"bytes"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func TestPrintVMs(t *testing.T) {
	job := &api.Job{Name: "j", Groups: []*api.Group{{Name: "g", Tasks: []*api.Task{
		{Name: "web", Driver: api.DriverDocker, Resources: api.Resources{CPU: 1500, Memory: 64}},
		{Name: "vm", Driver: api.DriverQEMU, Resources: api.Resources{CPU: 1500, Memory: 256}},
		{Name: "big", Driver: api.DriverQEMU, Resources: api.Resources{CPU: 2000, Memory: 1024}},
	}}}}
	var b bytes.Buffer
	printVMs(&b, job)
	want := "VM g/vm: 2 vCPU(s) from 1500 millicores, rounded up; 256 MiB guest RAM, 416 MiB accounted per VM with QEMU's overhead\n" +
		"VM g/big: 2 vCPU(s) from 2000 millicores; 1024 MiB guest RAM, 1184 MiB accounted per VM with QEMU's overhead\n"
	if b.String() != want {
		t.Errorf("got:\n%swant:\n%s", b.String(), want)
	}
}
