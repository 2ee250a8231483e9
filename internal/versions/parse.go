package versions

import (
	"fmt"
	"regexp"
	"strings"

	goversion "github.com/hashicorp/go-version"
)

// Components Gantry knows by name. Kernel versions are compared by their
// release and ABI number; every other component by its dotted numbers.
const (
	Gantry     = "gantry"
	OS         = "os"
	Kernel     = "kernel"
	Docker     = "docker"
	DockerAPI  = "docker-api"
	Containerd = "containerd"
	Runc       = "runc"
	NVIDIA     = "nvidia-driver"
	CUDA       = "cuda"
	NVML       = "nvml"
	QEMU       = "qemu"
	Wasm       = "wasm-runtime"
	Etcd       = "etcd"
)

var (
	// kernelRelease: "6.1.0-28-cloud-amd64" → release 6.1.0, ABI 28.
	kernelRelease = regexp.MustCompile(`^(\d+(?:\.\d+){0,3})(?:-(\d+))?`)
	// dotted: the leading dotted numbers, an optional "v", and a
	// pre-release tag that means one (rc, beta, alpha); distribution
	// suffixes ("+dfsg1", "~ds1", "-0ubuntu1", "-1") are packaging, not
	// version.
	dotted = regexp.MustCompile(`^v?(\d+(?:\.\d+)*)(?:[-.]?((?:rc|beta|alpha)\.?\d*))?`)
)

// Parse reads a component's version as the component reports it, coping
// with the forms real systems print: "20.10.24+dfsg1" (Debian's Docker),
// "580.159.04" (NVIDIA driver), "6.1.0-28-cloud-amd64" (a Debian kernel,
// compared as 6.1.0.28), "1.6.20~ds1", "v1.1.12", "3.6.5", "27.0.0-rc.1".
func Parse(component, raw string) (*goversion.Version, error) {
	s := strings.TrimSpace(raw)
	if component == Kernel {
		m := kernelRelease.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("kernel version %q does not start with a release number like 6.1.0", raw)
		}
		v := m[1]
		if m[2] != "" {
			for strings.Count(v, ".") < 2 {
				v += ".0"
			}
			v += "." + m[2]
		}
		return goversion.NewVersion(v)
	}
	m := dotted.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("%s version %q does not start with a number like 1.2.3", component, raw)
	}
	v := m[1]
	if m[2] != "" {
		v += "-" + strings.ReplaceAll(m[2], ".", "")
	}
	return goversion.NewVersion(v)
}

// Compare orders two versions of one component: -1, 0 or 1. A version
// that cannot be read sorts before every readable one, and two unreadable
// ones compare as strings, so that sorting never fails.
func Compare(component, a, b string) int {
	va, ea := Parse(component, a)
	vb, eb := Parse(component, b)
	switch {
	case ea != nil && eb != nil:
		return strings.Compare(a, b)
	case ea != nil:
		return -1
	case eb != nil:
		return 1
	}
	return va.Compare(vb)
}

// Constraint is a version range as a policy writes it: comma-separated
// comparisons that all hold (">= 25.0.0, < 25.0.2").
type Constraint struct {
	text string
	c    goversion.Constraints
}

// ParseConstraint reads a range. The versions in it are read with Parse's
// rules for the component.
func ParseConstraint(component, text string) (Constraint, error) {
	var parts []string
	for _, p := range strings.Split(text, ",") {
		p = strings.TrimSpace(p)
		i := strings.IndexAny(p, "0123456789v")
		if i < 0 {
			return Constraint{}, fmt.Errorf("range %q: %q names no version", text, p)
		}
		op, ver := strings.TrimSpace(p[:i]), p[i:]
		switch op {
		case "", "=", "!=", ">", "<", ">=", "<=":
		default:
			return Constraint{}, fmt.Errorf("range %q: %q is not a comparison; use =, !=, >, <, >= or <=", text, op)
		}
		v, err := Parse(component, ver)
		if err != nil {
			return Constraint{}, fmt.Errorf("range %q: %w", text, err)
		}
		parts = append(parts, op+" "+v.String())
	}
	c, err := goversion.NewConstraint(strings.Join(parts, ", "))
	if err != nil {
		return Constraint{}, fmt.Errorf("range %q: %w", text, err)
	}
	return Constraint{text: text, c: c}, nil
}

// Contains reports whether a reported version lies in the range; an
// unreadable version lies in none.
func (c Constraint) Contains(component, raw string) bool {
	v, err := Parse(component, raw)
	if err != nil {
		return false
	}
	// go-version keeps pre-releases out of ranges that do not name one;
	// a known-bad range must catch them too, so compare the core as well.
	return c.c.Check(v) || (v.Prerelease() != "" && c.c.Check(v.Core()))
}

func (c Constraint) String() string { return c.text }
