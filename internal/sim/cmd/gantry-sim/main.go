// Command gantry-sim is `gantry sim` as a binary of its own, for the
// branch where the simulator lands before the gantry CLI carries it, and
// for benchmarks that should not build the whole CLI. It accepts the same
// flags.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/gantryhq/gantry/internal/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := sim.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
