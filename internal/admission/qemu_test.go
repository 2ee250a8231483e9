package admission

import (
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/audit"
)

const vmSpec = `name: vm
groups:
  - name: vm
    tasks:
      - name: guest
        driver: qemu
        config: {kernel: /k, ports: [{name: http, to: 8080}]ARGS}
        resources: {cpu: 1000, memory: 256}
`

// TestQEMUArgsGated: a VM without extra QEMU arguments is admitted; with
// them the default policy refuses it, and a namespace exception allows it.
func TestQEMUArgsGated(t *testing.T) {
	p := audit.DefaultPolicy()
	rv, err := Check(p, parse(t, strings.Replace(vmSpec, "ARGS", "", 1)))
	if err != nil || !rv.Admitted() || len(rv.Warning) != 0 {
		t.Fatalf("plain VM: %v %+v", err, rv)
	}
	job := parse(t, strings.Replace(vmSpec, "ARGS", `, args: ["-device", "pci-assign,host=01:00.0"]`, 1))
	rv, err = Check(p, job)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Admitted() || rv.Blocking[0].CheckID != audit.CheckQEMUArgs || !strings.Contains(rv.Error(), "config.args") {
		t.Fatalf("VM with args: admitted=%v %s", rv.Admitted(), rv.Error())
	}
	p.Exceptions = []audit.Exception{{Namespace: "lab", Check: audit.CheckQEMUArgs, Action: audit.ActionWarn}}
	if err := p.Validate(); err != nil {
		t.Fatalf("an exception for %s: %v", audit.CheckQEMUArgs, err)
	}
	job.Namespace = "lab"
	if rv, _ := Check(p, job); !rv.Admitted() || len(rv.Warning) != 1 {
		t.Fatalf("in the excepted namespace: %+v", rv)
	}
}
