package jobspec

import "go.yaml.in/yaml/v4"

// Locator finds the line of a field in a spec's text, so that problems
// found later, by checks that see only the decoded job (the server's
// cluster checks, package validate), are located like Parse's own.
type Locator struct {
	lines map[string]int
	root  int
}

// NewLocator reads the spec text as Parse does. For text Parse cannot
// read, every path is at line 0 (unknown).
func NewLocator(filename string, data []byte) (l *Locator) {
	l = &Locator{lines: map[string]int{}}
	if recoverPanics {
		defer func() {
			if recover() != nil {
				l = &Locator{lines: map[string]int{}}
			}
		}()
	}
	if len(data) > MaxSpecBytes {
		return l
	}
	root, perr := parseTree(filename, data)
	if perr != nil || root == nil || root.Kind != yaml.MappingNode {
		return l
	}
	_, d := decode(root)
	l.lines, l.root = d.lines, root.Line
	return l
}

// Line is the line of path, or of its nearest ancestor written in the
// spec (a key left out is reported where its parent is); the document's
// first line for the empty path; 0 when unknown.
func (l *Locator) Line(path string) int {
	if l == nil || l.root == 0 {
		return 0
	}
	return lineOf(path, l.lines, l.root)
}
