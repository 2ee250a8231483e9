package jobspec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with a job spec: where it is and what is wrong.
type FieldError struct {
	// Path names the field, as the spec spells it:
	// "groups[0].tasks[1].resources.memory". It is empty for problems with
	// the document as a whole (empty file, invalid YAML).
	Path string `json:"path"`
	// Line is the 1-based line of the field in the spec, or 0 when it is not
	// known (Validate works on decoded values and knows no lines).
	Line int `json:"line,omitempty"`
	// Message is one sentence saying what is wrong and what is allowed.
	Message string `json:"message"`
}

// Error formats the problem as "path: message (line N)".
func (e FieldError) Error() string { return e.format("") }

func (e FieldError) format(file string) string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	} else if e.Line == 0 && file != "" {
		b.WriteString(file)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Line > 0 {
		b.WriteString(" (")
		if file != "" {
			b.WriteString(file)
			b.WriteString(":")
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(")")
	}
	return b.String()
}

// Errors is what Parse returns when a spec is rejected: every problem found,
// sorted by line.
type Errors struct {
	File   string       // the file name given to Parse
	Fields []FieldError // at least one
}

// Error lists the problems one per line, each as
// "groups[0].tasks[1].resources.memory: must be greater than 0 (web.yaml:14)".
func (e *Errors) Error() string {
	lines := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		lines[i] = f.format(e.File)
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each FieldError to errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		errs[i] = f
	}
	return errs
}

// sortFields orders problems by line, keeping the order they were found in
// for problems on the same line.
func sortFields(fs []FieldError) {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Line < fs[j].Line })
}

// collector gathers problems under paths.
type collector struct{ errs []FieldError }

func (c *collector) add(path, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Path helpers. Keys that are plain identifiers are written ".key"; any
// other key is quoted: `["a.b"]`.

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func field(path, key string) string {
	if plainKey(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return path + "[" + strconv.Quote(clip(key, 64)) + "]"
}

func plainKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9', c == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// parent strips the last segment of a path: "a.b[2]" → "a.b" → "a" → "".
func parent(path string) string {
	if strings.HasSuffix(path, `"]`) {
		// A quoted key: strconv.Quote escapes every '"' inside it, so the
		// last `["` is the opening one.
		if i := strings.LastIndex(path, `["`); i >= 0 {
			return path[:i]
		}
	}
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// clip shortens s to at most n bytes (on a rune boundary) for messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !runeStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }

// quote renders a user's value inside a message, shortened.
func quote(s string) string { return strconv.Quote(clip(s, 64)) }
