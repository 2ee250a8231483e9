// Command sleeper is the process inside the audit tests' image: it waits
// for SIGTERM or SIGINT and exits cleanly. With -health it exits 0 at once,
// so the image can carry an exec-form health check without a shell.
package main

import (
	"flag"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	health := flag.Bool("health", false, "exit 0 immediately (health probe)")
	flag.Parse()
	if *health {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
