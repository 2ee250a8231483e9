// Command testsummary reads `go test -json` on stdin, prints the output of
// failing tests as it comes and, at the end, one summary line with the
// passed, failed and skipped tests, naming each skipped one and why, so
// that no skip goes unseen. It exits 1 when a test or package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	out := map[string][]string{} // output per test, kept until it ends
	var passed, failed int
	var skipped, failures []string
	failedPkg := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // build errors and the like
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			out[key] = append(out[key], e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			}
			delete(out, key)
		case "skip":
			if e.Test != "" {
				why := ""
				for _, l := range out[key] {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
						why = l
					}
				}
				skipped = append(skipped, fmt.Sprintf("%s %s (%s)", e.Package, e.Test, why))
			}
			delete(out, key)
		case "fail":
			if e.Test != "" {
				failed++
				failures = append(failures, e.Package+" "+e.Test)
			} else {
				failedPkg = true
			}
			fmt.Print(strings.Join(out[key], ""))
			delete(out, key)
		}
	}
	sort.Strings(skipped)
	fmt.Printf("\ntests: %d passed, %d failed, %d skipped\n", passed, failed, len(skipped))
	for _, f := range failures {
		fmt.Printf("  FAIL %s\n", f)
	}
	for _, s := range skipped {
		fmt.Printf("  SKIP %s\n", s)
	}
	if failed > 0 || failedPkg {
		os.Exit(1)
	}
}
