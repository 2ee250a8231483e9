package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
)

// specWith is a job with one qemu task whose config block is config.
func specWith(config string, extra string) string {
	return `name: vm
groups:
  - name: vm
    tasks:
      - name: guest
        driver: qemu
        config: ` + config + `
        resources: {cpu: 1000, memory: 256}
` + extra
}

// TestConfigRules checks the job-spec rules of the qemu keys, each with
// its located message.
func TestConfigRules(t *testing.T) {
	tests := []struct {
		name, config, extra string
		want                []string // substrings of the one-line problems, in order
	}{
		{"valid direct boot", `{kernel: /k, initrd: /i, append: "console=ttyS0", ports: [{name: http, to: 8080}]}`, "", nil},
		{"valid image with every key", `{image: /img.qcow2, accelerator: tcg, machine: pc, cpu_model: "max,+avx", graceful_shutdown: false, network_counters: false, args: [-rtc, base=utc]}`, "", nil},
		{"nothing to boot", `{accelerator: auto}`, "", []string{"config.image: or config.kernel is required by the qemu driver"}},
		{"initrd without kernel", `{image: /a.img, initrd: /i}`, "", []string{"config.initrd: needs config.kernel"}},
		{"append without kernel", `{image: /a.img, append: x}`, "", []string{"config.append: needs config.kernel"}},
		{"relative image", `{image: disk.qcow2}`, "", []string{`config.image: "disk.qcow2" is not an absolute path on the node`}},
		{"comma in kernel", `{kernel: "/a,b"}`, "", []string{"config.kernel: \"/a,b\" holds a comma"}},
		{"bad accelerator", `{kernel: /k, accelerator: hvf}`, "", []string{`config.accelerator: "hvf" is not an accelerator; use auto, kvm or tcg`}},
		{"bad machine", `{kernel: /k, machine: "q35 -x"}`, "", []string{"config.machine:"}},
		{"guest port twice", `{kernel: /k, ports: [{name: a, to: 80}, {name: b, to: 80}]}`, "", []string{"config.ports[1].to: forwards to guest port 80, as groups[0].tasks[0].config.ports[0] already does"}},
		{"port without to", `{kernel: /k, ports: [{name: a}]}`, "", []string{"config.ports[0].to: is required by the qemu driver"}},
		{"command on a VM", `{kernel: /k, command: /bin/sh}`, "", []string{"config.command: applies to the docker and exec drivers"}},
		{"exec check", `{kernel: /k, ports: [{name: a, to: 80}]}`, "        checks: [{type: exec, command: [\"true\"]}]\n",
			[]string{"checks[0].type: exec checks cannot run in a VM"}},
		{"docker-only key", `{kernel: /k, network_mode: host}`, "", []string{"config.network_mode: applies only to the docker driver"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jobspec.Parse("t.yaml", []byte(specWith(tc.config, tc.extra)))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) || !strings.Contains(lines[i], "(t.yaml:") {
					t.Errorf("problem %q, want it to contain %q and its line", lines[i], w)
				}
			}
		})
	}
}

func TestQEMUKeysOnOtherDrivers(t *testing.T) {
	spec := strings.Replace(specWith(`{command: /bin/true, kernel: /k, accelerator: kvm, network_counters: true}`, ""), "driver: qemu", "driver: exec", 1)
	_, err := jobspec.Parse("t.yaml", []byte(spec))
	for _, key := range []string{"kernel", "accelerator", "network_counters"} {
		if err == nil || !strings.Contains(err.Error(), "config."+key+": applies only to the qemu driver") {
			t.Errorf("got %v, want %s refused on an exec task", err, key)
		}
	}
}

// FuzzConfig decodes arbitrary qemu config blocks. Parse must never panic
// and must reject with *Errors; a config it accepts must give a command
// line (NewPlan fails only for accelerator kvm on a node without KVM), so
// that what validation lets through the driver can start.
//
//	go test -run='^$' -fuzz=FuzzConfig -fuzztime=30s ./internal/driver/qemu/
func FuzzConfig(f *testing.F) {
	for _, seed := range []string{
		`{kernel: /k, initrd: /i, append: "console=ttyS0", ports: [{name: http, to: 8080}]}`,
		`{image: /img.qcow2, accelerator: kvm, machine: pc, cpu_model: host, graceful_shutdown: false, network_counters: false, args: [-rtc, base=utc]}`,
		`{image: /a, ports: [{name: a, to: 80}, {name: b, to: 80, static: 9000}]}`,
		`{initrd: /i}`, `{kernel: "/a,b"}`, `{}`, `[1, 2]`, `{kernel: /k, accelerator: 7}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, config string) {
		if strings.ContainsAny(config, "\n\r") {
			return // one flow mapping on one line
		}
		job, err := jobspec.Parse("t.yaml", []byte(specWith(config, "")))
		if err != nil {
			var errs *jobspec.Errors
			if !errors.As(err, &errs) || len(errs.Fields) == 0 {
				t.Fatalf("rejected with %T %v, want *jobspec.Errors", err, err)
			}
			return
		}
		task := job.Groups[0].Tasks[0]
		r := &api.AllocatedResources{CPU: task.Resources.CPU, Memory: task.Resources.Memory}
		for i, p := range task.Config.Ports {
			r.Ports = append(r.Ports, api.AllocatedPort{Name: p.Name, Host: 20000 + i, To: p.To})
		}
		for _, kvm := range []bool{true, false} {
			p, err := NewPlan(task, r, "127.0.0.1", kvm)
			if err != nil {
				if !kvm && task.Config.Accelerator == api.AccelKVM {
					continue
				}
				t.Fatalf("accepted config %s, but no command line: %v", config, err)
			}
			for _, a := range Args(p)[:len(Args(p))-len(task.Config.Args)] {
				if a == "" {
					t.Fatalf("empty argument in %q", Args(p))
				}
			}
		}
	})
}
