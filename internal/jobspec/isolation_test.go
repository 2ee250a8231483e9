package jobspec

import (
	"strings"
	"testing"
)

func TestParseVolume(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Volume
		problem string
	}{
		{in: "/a:/b", want: Volume{Source: "/a", Target: "/b"}},
		{in: "/a:/b:ro", want: Volume{Source: "/a", Target: "/b", ReadOnly: true}},
		{in: "/a:/b:rw,rshared", want: Volume{Source: "/a", Target: "/b", Propagation: "rshared"}},
		{in: "/var/run/docker.sock:/var/run/docker.sock", want: Volume{Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
		{in: "/", problem: "is not a volume"},
		{in: "/a:/b:ro:x", problem: "is not a volume"},
		{in: ":/b", problem: "empty host path"},
		{in: "/a:", problem: "empty container path"},
		{in: "/a:/b:shared,slave", problem: "more than one"},
		{in: "/a:/b:", problem: `unknown option ""`},
		{in: "/a:/..", problem: "climbs"},
	} {
		got, problem := ParseVolume(tc.in)
		if tc.problem != "" {
			if !strings.Contains(problem, tc.problem) {
				t.Errorf("ParseVolume(%q): problem %q, want one containing %q", tc.in, problem, tc.problem)
			}
			continue
		}
		if problem != "" || got != tc.want {
			t.Errorf("ParseVolume(%q) = %+v, %q; want %+v", tc.in, got, problem, tc.want)
		}
	}
}

func TestParseDevice(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Device
		problem string
	}{
		{in: "/dev/fuse", want: Device{Host: "/dev/fuse", Container: "/dev/fuse", Permissions: "rwm"}},
		{in: "/dev/nvidia0:/dev/gpu", want: Device{Host: "/dev/nvidia0", Container: "/dev/gpu", Permissions: "rwm"}},
		{in: "/dev/sda:/dev/xvda:r", want: Device{Host: "/dev/sda", Container: "/dev/xvda", Permissions: "r"}},
		{in: "/dev/sda:/dev/xvda:rr", problem: "permissions"},
		{in: "/dev/sda:/dev/xvda:", problem: "permissions"},
		{in: "sda", problem: "not absolute"},
	} {
		got, problem := ParseDevice(tc.in)
		if tc.problem != "" {
			if !strings.Contains(problem, tc.problem) {
				t.Errorf("ParseDevice(%q): problem %q, want one containing %q", tc.in, problem, tc.problem)
			}
			continue
		}
		if problem != "" || got != tc.want {
			t.Errorf("ParseDevice(%q) = %+v, %q; want %+v", tc.in, got, problem, tc.want)
		}
	}
}
