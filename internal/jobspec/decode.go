package jobspec

import (
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"go.yaml.in/yaml/v4"
)

// decoder turns a YAML node tree (from YAML or JSON text) into api values,
// field by field through their JSON names, so that spec keys and the wire
// format can never drift apart. It collects every problem instead of
// stopping at the first, and records the line of every key it meets.
type decoder struct {
	errs  []FieldError
	lines map[string]int  // path → line of the key (or list item)
	given map[string]bool // paths that hold a non-null value
}

func newDecoder() *decoder {
	return &decoder{lines: map[string]int{}, given: map[string]bool{}}
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	c := collector{}
	c.add(path, format, args...)
	e := c.errs[0]
	e.Line = n.Line
	d.errs = append(d.errs, e)
}

// maxList is the most entries of one list that the decoder reads: the
// largest of the list limits that Validate enforces.
const maxList = MaxArgs

// serverOwned are Job fields the server sets. They are accepted, so that a
// job printed as JSON can be submitted again, and ignored.
var serverOwned = map[string]bool{
	"version": true, "stop": true, "status": true, "submit_time": true, "modify_index": true,
}

// wholeNumber matches the integers YAML and JSON write: decimal, with
// YAML's 0x, 0o and 0b forms.
var wholeNumber = regexp.MustCompile(`^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$`)

var (
	jobType      = reflect.TypeFor[api.Job]()
	durationType = reflect.TypeFor[api.Duration]()
)

// fieldsOf maps the JSON names of a struct's fields to their indexes.
func fieldsOf(t reflect.Type) (map[string]int, []string) {
	byName := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if t == jobType && serverOwned[name] {
			byName[name] = -1
			continue
		}
		byName[name] = i
		names = append(names, name)
	}
	return byName, names
}

// value decodes n into v (addressable) and records problems under path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		d.fail(n, path, "YAML aliases (*%s) are not supported; write the value out in full", clip(n.Value, 64))
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // absent: the zero value
	}
	d.given[path] = true
	t := v.Type()
	if t == durationType {
		d.duration(n, path, v)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.value(n, path, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.structure(n, path, v)
	case reflect.Slice:
		d.list(n, path, v)
	case reflect.Map:
		d.mapping(n, path, v)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be a string, not %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64, reflect.Int32:
		var x int64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || !wholeNumber.MatchString(n.Value) {
			d.fail(n, path, "must be a whole number, not %s", describe(n))
			return
		}
		if tag != "!!int" || n.Decode(&x) != nil || v.OverflowInt(x) {
			d.fail(n, path, "must be a whole number of a sensible size, not %s", describe(n))
			return
		}
		v.SetInt(x)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "must be true or false, not %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		// The api types hold no other kinds; a new one needs a case here.
		d.fail(n, path, "cannot be read: the spec decoder does not handle %s values", t)
	}
}

func (d *decoder) duration(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, `must be a duration with a unit, like "10s" or "5m", not %s`, describe(n))
		return
	}
	x, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, `must be a duration with a unit, like "10s" or "5m", not %s`, describe(n))
		return
	}
	v.SetInt(int64(x))
}

func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping of keys to values, not %s", describe(n))
		return
	}
	byName, names := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key, ok := d.key(k, path)
		if !ok {
			continue
		}
		p := field(path, key)
		if first, dup := seen[key]; dup {
			d.fail(k, p, "is given twice (first on line %d); give each key once", first)
			continue
		}
		seen[key] = k.Line
		d.lines[p] = k.Line
		fi, known := byName[key]
		switch {
		case !known && key == "<<":
			d.fail(k, p, "merge keys (<<) are not supported; write the keys out in full")
		case !known:
			d.fail(k, p, "%s", unknownField(key, names))
		case fi >= 0:
			d.value(val, p, v.Field(fi))
		}
	}
}

func (d *decoder) list(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "must be a list, not %s", describe(n))
		return
	}
	// The slice keeps the list's length, so that Validate reports the true
	// count, but only the entries Validate may look at are decoded: every
	// list it checks is bounded by at most maxList entries
	// (TestEveryListIsBounded).
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content[:min(len(n.Content), maxList)] {
		p := index(path, i)
		d.lines[p] = item.Line
		d.value(item, p, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping of keys to values, not %s", describe(n))
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.fail(n, path, "cannot be read: the spec decoder only handles string keys")
		return
	}
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key, ok := d.key(k, path)
		if !ok {
			continue
		}
		p := field(path, key)
		if first, dup := seen[key]; dup {
			d.fail(k, p, "is given twice (first on line %d); give each key once", first)
			continue
		}
		seen[key] = k.Line
		d.lines[p] = k.Line
		e := reflect.New(t.Elem()).Elem()
		d.value(val, p, e)
		m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), e)
	}
	v.Set(m)
}

// key reads a mapping key, which must be a plain scalar.
func (d *decoder) key(k *yaml.Node, path string) (string, bool) {
	switch {
	case k.Kind == yaml.AliasNode:
		d.fail(k, path, "YAML aliases (*%s) are not supported; write the key out in full", clip(k.Value, 64))
		return "", false
	case k.Kind != yaml.ScalarNode:
		d.fail(k, path, "has a key that is %s; keys must be strings", describe(k))
		return "", false
	}
	return k.Value, true
}

// unknownField explains an unknown key, suggesting the closest known one.
func unknownField(key string, names []string) string {
	best, dist := "", 3
	for _, n := range names {
		if d := EditDistance(strings.ToLower(key), n); d < dist {
			best, dist = n, d
		}
	}
	if best != "" {
		return "unknown field; did you mean " + quote(best) + "?"
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	return "unknown field; the fields allowed here are " + strings.Join(sorted, ", ")
}

// EditDistance is the Levenshtein distance, for "did you mean"
// suggestions only; names longer than 64 bytes never match.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node holds, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return clip(n.Value, 64)
		case "!!bool":
			return n.Value
		case "!!null":
			return "null"
		case "!!str":
			return quote(n.Value)
		}
		return "a " + clip(n.ShortTag(), 32) + " value"
	}
	return "an empty document"
}
