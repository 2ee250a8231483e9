// Command gen writes the Promela transitions of the allocation lifecycle
// from the Go table (lifecycle.Table), so that the model checks the state
// machine the servers and agents run. Run it with
//
//	go generate ./internal/lifecycle/...
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/gantryhq/gantry/internal/lifecycle"
)

func main() {
	out := flag.String("out", "model/transitions.pml", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, lifecycle.Promela(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
}
