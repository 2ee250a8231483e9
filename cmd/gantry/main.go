// Command gantry is Gantry's one binary: server, agent, single-node dev
// cluster and every CLI verb.
package main

import (
	"os"

	"github.com/gantryhq/gantry/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
