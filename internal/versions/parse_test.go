package versions

import "testing"

// TestParseRealStrings reads versions as real systems print them.
func TestParseRealStrings(t *testing.T) {
	cases := []struct {
		component, raw, want string
	}{
		{Docker, "20.10.24+dfsg1", "20.10.24"},
		{Docker, "27.3.1", "27.3.1"},
		{Docker, "27.0.0-rc.1", "27.0.0-rc1"},
		{DockerAPI, "1.41", "1.41.0"},
		{Containerd, "1.6.20~ds1", "1.6.20"},
		{Containerd, "v1.7.22", "1.7.22"},
		{Runc, "1.1.5+ds1", "1.1.5"},
		{NVIDIA, "580.159.04", "580.159.4"},
		{NVIDIA, "535.104.05", "535.104.5"},
		{CUDA, "12.4", "12.4.0"},
		{Kernel, "6.1.0-28-cloud-amd64", "6.1.0.28"},
		{Kernel, "6.1.0-9-amd64", "6.1.0.9"},
		{Kernel, "5.15.0-1051-azure", "5.15.0.1051"},
		{Kernel, "6.8.0", "6.8.0"},
		{QEMU, "7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)", "7.2.15"},
		{Etcd, "3.6.5", "3.6.5"},
		{OS, "12", "12"},
	}
	for _, tc := range cases {
		v, err := Parse(tc.component, tc.raw)
		if err != nil {
			t.Errorf("Parse(%s, %q): %v", tc.component, tc.raw, err)
			continue
		}
		want, _ := Parse("", tc.want)
		if !v.Equal(want) || v.Prerelease() != want.Prerelease() {
			t.Errorf("Parse(%s, %q) = %s, want %s", tc.component, tc.raw, v, tc.want)
		}
	}
	for _, bad := range []string{"", "unknown", "n/a"} {
		if _, err := Parse(Docker, bad); err == nil {
			t.Errorf("Parse(%q) accepted it", bad)
		}
	}
}

func TestCompare(t *testing.T) {
	cases := []struct {
		component, a, b string
		want            int
	}{
		{Kernel, "6.1.0-28-cloud-amd64", "6.1.0-9-amd64", 1}, // ABI 28 after 9, not before as text
		{Kernel, "6.1.0-28-cloud-amd64", "6.1.0-28-amd64", 0},
		{Kernel, "5.10.0-30-amd64", "6.1.0-9-amd64", -1},
		{Docker, "20.10.24+dfsg1", "20.10.24", 0},
		{Docker, "20.10.24+dfsg1", "24.0.7", -1},
		{Docker, "27.0.0-rc.1", "27.0.0", -1},
		{NVIDIA, "580.159.04", "535.104.05", 1},
		{NVIDIA, "550.54.14", "550.54.15", -1},
		{Containerd, "1.6.20~ds1", "1.7.0", -1},
		{Docker, "garbage", "1.0", -1},
	}
	for _, tc := range cases {
		if got := Compare(tc.component, tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%s, %q, %q) = %d, want %d", tc.component, tc.a, tc.b, got, tc.want)
		}
		if got := Compare(tc.component, tc.b, tc.a); got != -tc.want {
			t.Errorf("Compare(%s, %q, %q) = %d, want %d (antisymmetry)", tc.component, tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestConstraint(t *testing.T) {
	cases := []struct {
		component, rng, raw string
		want                bool
	}{
		{Docker, ">= 25.0.0, < 25.0.2", "25.0.1", true},
		{Docker, ">= 25.0.0, < 25.0.2", "25.0.2", false},
		{Docker, ">= 25.0.0, < 25.0.2", "25.0.0-rc.2", true},
		{Docker, "< 23.0", "20.10.24+dfsg1", true},
		{Kernel, ">= 6.1.0-20, < 6.1.0-26", "6.1.0-21-cloud-amd64", true},
		{Kernel, ">= 6.1.0-20, < 6.1.0-26", "6.1.0-28-cloud-amd64", false},
		{NVIDIA, "= 550.54.14", "550.54.14", true},
		{NVIDIA, "< 535", "580.159.04", false},
	}
	for _, tc := range cases {
		c, err := ParseConstraint(tc.component, tc.rng)
		if err != nil {
			t.Fatalf("ParseConstraint(%q): %v", tc.rng, err)
		}
		if got := c.Contains(tc.component, tc.raw); got != tc.want {
			t.Errorf("%q contains %q: %v, want %v", tc.rng, tc.raw, got, tc.want)
		}
	}
	for _, bad := range []string{"~> 1.0", ">= ", "between 1 and 2"} {
		if _, err := ParseConstraint(Docker, bad); err == nil {
			t.Errorf("ParseConstraint(%q) accepted it", bad)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts compares equal to
// itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"20.10.24+dfsg1", "580.159.04", "6.1.0-28-cloud-amd64", "1.6.20~ds1", "v1.1.12", "27.0.0-rc.1", ""} {
		f.Add(Kernel, s)
		f.Add(Docker, s)
	}
	f.Fuzz(func(t *testing.T, component, raw string) {
		v, err := Parse(component, raw)
		if err != nil {
			return
		}
		if Compare(component, raw, raw) != 0 || v.Compare(v) != 0 {
			t.Fatalf("%q does not equal itself", raw)
		}
	})
}
