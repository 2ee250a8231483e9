package jobspec

import (
	"regexp"
	"sync"
)

// lazyRegexp is a pattern compiled at its first use instead of when the
// package initializes: every start of the gantry binary (each CLI
// command, each executor and wasm runner) initializes this package, and
// most never check a job spec, while a counted repetition such as
// {0,253} compiles to a program as long as its count.
func lazyRegexp(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}
