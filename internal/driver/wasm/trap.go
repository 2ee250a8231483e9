package wasm

import (
	"fmt"
	"regexp"
	"strings"
)

// Exit codes of the runner that are not the module's own proc_exit code.
const (
	// ExitTrap: the module trapped (unreachable, out-of-bounds access,
	// division by zero, ...). 134 is 128+SIGABRT, what wasmtime reports.
	ExitTrap = 134
	// ExitTerminated: the module was stopped (SIGTERM to the runner).
	ExitTerminated = 143
	// ExitRunner: the runner could not run the module at all.
	ExitRunner = 125
)

var (
	frameResults = regexp.MustCompile(`\) (?:[a-z0-9]+|\([a-z0-9,]*\))$`)
	frameParams  = regexp.MustCompile(`\([a-z0-9,]*\)$`)
)

// DescribeTrap turns a wazero error from a running module into one
// sentence: the trap's message and the function it happened in, e.g.
// "wasm trap: unreachable, in function crash". The runtime's text is
// "wasm error: <message>\nwasm stack trace:\n\t<module>.<function>(<params>) <results>\n...";
// moduleName is the name the module was instantiated with.
func DescribeTrap(text, moduleName string) string {
	lines := strings.Split(text, "\n")
	msg := strings.TrimSpace(strings.TrimPrefix(lines[0], "wasm error: "))
	if msg == "" {
		msg = "the module failed"
	}
	fn := ""
	for i, l := range lines {
		if strings.TrimSpace(l) == "wasm stack trace:" && i+1 < len(lines) {
			fn = frameFunction(strings.TrimSpace(lines[i+1]), moduleName)
			break
		}
	}
	if fn == "" {
		return "wasm trap: " + msg
	}
	return fmt.Sprintf("wasm trap: %s, in function %s", msg, fn)
}

// frameFunction is the function name of one stack-trace line.
func frameFunction(frame, moduleName string) string {
	if loc := frameResults.FindStringIndex(frame); loc != nil {
		frame = frame[:loc[0]+1]
	}
	if loc := frameParams.FindStringIndex(frame); loc != nil {
		frame = frame[:loc[0]]
	}
	return strings.TrimPrefix(frame, moduleName+".")
}
