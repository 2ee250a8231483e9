package scheduler

import (
	"fmt"
	"strconv"
	"strings"
)

// version is a parsed version: numeric segments (at least three, missing
// ones zero) and an optional pre-release ("1.2.3-rc1" → rc1), which sorts
// before the release. Build metadata ("+build") is ignored. A leading "v"
// is allowed, so "v1.28", "24.0.7" and "5.15.0-91-generic" all parse.
type version struct {
	seg [4]int
	pre string
}

func parseVersion(s string) (version, error) {
	var v version
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		s, v.pre = s[:i], s[i+1:]
		if v.pre == "" {
			return v, fmt.Errorf("version %q: empty pre-release", s)
		}
	}
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > len(v.seg) {
		return v, fmt.Errorf("version %q: want up to four numbers separated by dots", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("version %q: %q is not a number", s, p)
		}
		v.seg[i] = n
	}
	return v, nil
}

func (v version) compare(o version) int {
	for i := range v.seg {
		if v.seg[i] != o.seg[i] {
			if v.seg[i] < o.seg[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.pre == o.pre:
		return 0
	case v.pre == "":
		return 1
	case o.pre == "":
		return -1
	}
	return comparePre(v.pre, o.pre)
}

// comparePre compares pre-release strings dot by dot, numbers numerically.
func comparePre(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, e1 := strconv.Atoi(as[i])
		y, e2 := strconv.Atoi(bs[i])
		switch {
		case e1 == nil && e2 == nil:
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
		case e1 == nil:
			return -1
		case e2 == nil:
			return 1
		default:
			if c := strings.Compare(as[i], bs[i]); c != 0 {
				return c
			}
		}
	}
	switch {
	case len(as) < len(bs):
		return -1
	case len(as) > len(bs):
		return 1
	}
	return 0
}

// versionConstraint is a comma-separated list of comparisons, all of which
// must hold: ">= 1.2, < 2.0". Operators: =, !=, <, <=, >, >= and ~>
// (pessimistic: "~> 1.2" is ">= 1.2, < 2", "~> 1.2.3" is ">= 1.2.3, <
// 1.3"). A bare version means "=".
type versionConstraint []versionCheck

type versionCheck struct {
	op    string
	ver   version
	upper version // for ~>
}

func parseVersionConstraint(s string) (versionConstraint, error) {
	var out versionConstraint
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		op := "="
		for _, o := range []string{"~>", ">=", "<=", "!=", ">", "<", "="} {
			if strings.HasPrefix(part, o) {
				op, part = o, strings.TrimSpace(part[len(o):])
				break
			}
		}
		v, err := parseVersion(part)
		if err != nil {
			return nil, fmt.Errorf("version constraint %q: %v", s, err)
		}
		c := versionCheck{op: op, ver: v}
		if op == "~>" {
			n := strings.Count(strings.TrimPrefix(part, "v"), ".") + 1
			if n < 2 {
				return nil, fmt.Errorf("version constraint %q: ~> needs at least major.minor", s)
			}
			c.upper = version{}
			copy(c.upper.seg[:], v.seg[:n-1])
			c.upper.seg[n-2]++
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty version constraint; write one like \">= 1.2, < 2\"")
	}
	return out, nil
}

func (vc versionConstraint) check(v version) bool {
	for _, c := range vc {
		r := v.compare(c.ver)
		ok := false
		switch c.op {
		case "=":
			ok = r == 0
		case "!=":
			ok = r != 0
		case ">":
			ok = r > 0
		case ">=":
			ok = r >= 0
		case "<":
			ok = r < 0
		case "<=":
			ok = r <= 0
		case "~>":
			ok = r >= 0 && v.compare(c.upper) < 0
		}
		if !ok {
			return false
		}
	}
	return true
}
