package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"go.yaml.in/yaml/v4"
)

// recoverPanics turns a panic inside Parse into an error. The fuzz test
// turns it off so that a panic fails the test with its stack.
var recoverPanics = true

// Parse reads one job spec, YAML or JSON, and returns the job with defaults
// applied (see Canonicalize) and validated (see Validate).
//
// The text is read as JSON when filename ends in ".json", or when it is a
// valid JSON object; otherwise as YAML. filename is used only in messages.
//
// On failure the job is nil and the error is an *Errors listing every
// problem found, each with its path and line.
//
// Keys left out are defaulted; a key given explicitly keeps its value even
// when that value is zero (priority: 0, count: 0, restart.attempts: 0,
// restart.delay: 0s). An update block's keys left out take the defaults
// of defaultUpdate; a deadline given as 0s means none. The fields the
// server sets (version, stop, status, submit_time, modify_index) are
// accepted and ignored, so that a job printed as JSON can be submitted
// again.
func Parse(filename string, data []byte) (job *api.Job, err error) {
	if recoverPanics {
		defer func() {
			if r := recover(); r != nil {
				job = nil
				err = &Errors{File: filename, Fields: []FieldError{{
					Message: fmt.Sprintf("internal error while reading the spec (%v); please report it with the spec", r),
				}}}
			}
		}()
	}
	fail := func(fs ...FieldError) (*api.Job, error) { return nil, &Errors{File: filename, Fields: fs} }

	if len(data) > MaxSpecBytes {
		return fail(FieldError{Message: fmt.Sprintf("is %d bytes; a job spec may be at most %d bytes (1 MiB)", len(data), MaxSpecBytes)})
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail(FieldError{Message: "is empty; it must hold one job spec"})
	}

	root, perr := parseTree(filename, data)
	if perr != nil {
		return fail(*perr)
	}

	if root.Kind != yaml.MappingNode {
		return fail(FieldError{Line: root.Line, Message: "must be a mapping of the job's keys (name, groups, …) to values, not " + describe(root)})
	}
	job, d := decode(root)
	Canonicalize(job)

	// Validation problems inside a value that could not be decoded only
	// repeat the decoding problem.
	errs := d.errs
	failed := map[string]bool{}
	for _, e := range d.errs {
		if e.Path != "" {
			failed[e.Path] = true
		}
	}
	for _, e := range Validate(job) {
		if !coveredBy(e.Path, failed) {
			e.Line = lineOf(e.Path, d.lines, root.Line)
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		return job, nil
	}
	sortFields(errs)
	if len(errs) > MaxErrors {
		more := len(errs) - MaxErrors
		errs = append(errs[:MaxErrors], FieldError{Message: fmt.Sprintf("and %d more problems (only the first %d are listed)", more, MaxErrors)})
	}
	return fail(errs...)
}

// decode turns the document's root node into a job, applying the defaults
// that depend on whether a key was given at all. It returns the decoding
// problems and the lines of the keys in d.
func decode(root *yaml.Node) (*api.Job, *decoder) {
	d := newDecoder()
	job := &api.Job{}
	d.value(root, "", reflect.ValueOf(job).Elem())

	// Zero is a legal priority, count, number of restart attempts and
	// restart delay, so only keys left out get the default.
	if !d.given["priority"] {
		job.Priority = api.DefaultPriority
	}
	for i, g := range job.Groups {
		if g == nil {
			continue
		}
		p := index("groups", i)
		if !d.given[p+".count"] {
			g.Count = 1
		}
		if u := g.Update; u != nil {
			defaultUpdate(u, func(key string) bool { return d.given[p+".update."+key] })
		}
		if g.Restart != nil {
			def := api.DefaultRestartPolicy(job.Type)
			if !d.given[p+".restart.attempts"] {
				g.Restart.Attempts = def.Attempts
			}
			if !d.given[p+".restart.delay"] {
				g.Restart.Delay = def.Delay
			}
		}
	}
	return job, d
}

// Defaults of an update block's keys when they are left out.
// They are those of the block a service group without one gets
// (api.DefaultUpdateStrategy).
var (
	DefaultMinHealthyTime   = api.DefaultUpdateStrategy().MinHealthyTime.D()
	DefaultHealthyDeadline  = api.DefaultUpdateStrategy().HealthyDeadline.D()
	DefaultProgressDeadline = api.DefaultUpdateStrategy().ProgressDeadline.D()
)

// defaultUpdate fills the keys of an update block that were left out:
// one replica at a time, healthy for 10s, within 5m, some progress every
// 10m. A default deadline that would contradict a chosen value (shorter
// than min_healthy_time or healthy_deadline) is left at 0, none.
func defaultUpdate(u *api.UpdateStrategy, given func(key string) bool) {
	if !given("max_parallel") {
		u.MaxParallel = 1
	}
	if !given("min_healthy_time") {
		u.MinHealthyTime = api.Duration(DefaultMinHealthyTime)
	}
	if !given("healthy_deadline") && u.MinHealthyTime.D() < DefaultHealthyDeadline {
		u.HealthyDeadline = api.Duration(DefaultHealthyDeadline)
	}
	if !given("progress_deadline") && u.HealthyDeadline.D() <= DefaultProgressDeadline && u.MinHealthyTime.D() < DefaultProgressDeadline {
		u.ProgressDeadline = api.Duration(DefaultProgressDeadline)
	}
}

// coveredBy reports whether path or one of its ancestors failed to decode.
func coveredBy(path string, failed map[string]bool) bool {
	if len(failed) == 0 {
		return false
	}
	for p := path; p != ""; p = parent(p) {
		if failed[p] {
			return true
		}
	}
	return false
}

// lineOf finds the line of path, or of its nearest ancestor that was
// written in the spec (a missing key is reported where its parent is).
func lineOf(path string, lines map[string]int, rootLine int) int {
	for p := path; p != ""; p = parent(p) {
		if l, ok := lines[p]; ok {
			return l
		}
	}
	return rootLine
}

// parseYAML reads exactly one YAML document.
func parseYAML(data []byte) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Message: "holds no job spec, only comments or document markers"}
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(err)
	case !emptyDocument(&next):
		return nil, &FieldError{Line: next.Line, Message: "holds a second YAML document; a file holds exactly one job spec"}
	}
	if emptyDocument(&doc) || len(doc.Content) != 1 {
		return nil, &FieldError{Message: "holds no job spec, only comments or document markers"}
	}
	return doc.Content[0], nil
}

func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return len(doc.Content) == 1 && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == ""
}

// yamlError turns a YAML syntax error into a located problem.
func yamlError(err error) *FieldError {
	var le *yaml.LoadError
	if errors.As(err, &le) {
		return &FieldError{Line: le.Mark.Line, Message: "is not valid YAML: " + le.Message}
	}
	var les *yaml.LoadErrors
	if errors.As(err, &les) && len(les.Errors) > 0 {
		return yamlError(les.Errors[0])
	}
	return &FieldError{Message: "is not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

func isJSON(filename string, data []byte) bool {
	if strings.HasSuffix(strings.ToLower(filename), ".json") {
		return true
	}
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

// parseJSON reads JSON into the same node tree YAML gives, with lines, so
// that both formats share one decoder. JSON is not read as YAML because
// YAML rejects some legal JSON (the escapes \/ and surrogate pairs).
func parseJSON(data []byte) (*yaml.Node, *FieldError) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &FieldError{Line: lineAt(data, int(se.Offset)), Message: "is not valid JSON: " + se.Error()}
		}
		return nil, &FieldError{Message: "is not valid JSON"}
	}
	b := &jsonBuilder{data: data, dec: json.NewDecoder(bytes.NewReader(data)), line: 1}
	b.dec.UseNumber()
	n, err := b.node()
	if err != nil {
		// json.Valid accepted the text, so the tokenizer cannot fail.
		return nil, &FieldError{Message: "is not valid JSON: " + err.Error()}
	}
	return n, nil
}

func lineAt(data []byte, off int) int {
	off = min(max(off, 0), len(data))
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

type jsonBuilder struct {
	data []byte
	dec  *json.Decoder
	pos  int // bytes counted into line so far
	line int
}

// start returns the line of the next token: the decoder's offset is just
// past the previous token, before white space, ':' and ','.
func (b *jsonBuilder) start() int {
	off := int(b.dec.InputOffset())
	for off < len(b.data) {
		c := b.data[off]
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ':' && c != ',' {
			break
		}
		off++
	}
	if off > b.pos {
		b.line += bytes.Count(b.data[b.pos:off], []byte{'\n'})
		b.pos = off
	}
	return b.line
}

func (b *jsonBuilder) node() (*yaml.Node, error) {
	line := b.start()
	tok, err := b.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &yaml.Node{Line: line, Column: 1}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
		} else {
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
		}
		for b.dec.More() {
			if n.Kind == yaml.MappingNode {
				kline := b.start()
				kt, err := b.dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k, Line: kline, Column: 1})
			}
			c, err := b.node()
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		if _, err := b.dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
	case string:
		n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!int", string(t)
		if strings.ContainsAny(string(t), ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!bool", strconv.FormatBool(t)
	case nil:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!null", "null"
	}
	return n, nil
}

// parseTree reads a spec into a YAML node tree, as JSON when the file name
// or the first byte says so and as YAML otherwise.
func parseTree(filename string, data []byte) (*yaml.Node, *FieldError) {
	if isJSON(filename, data) {
		return parseJSON(data)
	}
	return parseYAML(data)
}
