package gpu

import (
	"strconv"
	"strings"
)

// MatchModel reports whether a GPU model name matches a pattern. The
// pattern is one or more globs separated by "|" ("H100*|A100*"), where "*"
// matches any run of characters and "?" one character, compared without
// regard to case. A model that starts with "NVIDIA " also matches without
// that prefix, so "H100*" matches "NVIDIA H100 80GB HBM3". An empty
// pattern matches every model.
func MatchModel(pattern, model string) bool {
	if pattern == "" {
		return true
	}
	short := model
	if len(short) > 7 && strings.EqualFold(short[:7], "NVIDIA ") {
		short = short[7:]
	}
	for pattern != "" {
		alt := pattern
		if i := strings.IndexByte(pattern, '|'); i >= 0 {
			alt, pattern = pattern[:i], pattern[i+1:]
		} else {
			pattern = ""
		}
		alt = strings.TrimSpace(alt)
		if alt == "" {
			continue
		}
		if glob(alt, model) || (len(short) != len(model) && glob(alt, short)) {
			return true
		}
	}
	return false
}

// glob matches s against p ("*" and "?"), ASCII case-insensitively, with
// the usual backtracking over the last star (linear in practice).
func glob(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || lower(p[pi]) == lower(s[si])):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// ParseCC reads a compute capability written "major.minor" ("8.0", "9.0",
// "12.1") as major*100+minor, so capabilities compare as integers.
func ParseCC(s string) (int, bool) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ".")
	if !ok {
		min = "0"
	}
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || a < 0 || b < 0 || b > 99 || a > 99 {
		return 0, false
	}
	return a*100 + b, true
}

// ShareMemory is the memory in MiB that a share of milli thousandths takes
// on a GPU of deviceMemory MiB: memory when the request names it,
// otherwise the same fraction of the device's memory (rounded down).
func ShareMemory(milli, memory, deviceMemory int) int {
	if memory > 0 {
		return memory
	}
	return int(int64(milli) * int64(deviceMemory) / 1000)
}
