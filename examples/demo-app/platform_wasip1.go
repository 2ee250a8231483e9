//go:build wasip1

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// listen serves the TCP listener the wasm driver opened on the host port
// and handed over as a pre-opened socket: WASI preview 1 cannot open
// one itself. The descriptor is in GANTRY_LISTEN_FD_HTTP (3 when nothing
// else is pre-opened); it must be made non-blocking before
// net.FileListener, or Accept never returns.
func listen(string) (net.Listener, error) {
	fd := 3
	if v := os.Getenv("GANTRY_LISTEN_FD_HTTP"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("GANTRY_LISTEN_FD_HTTP=%q is not a descriptor number", v)
		}
		fd = n
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("pre-opened listener (fd %d): %w", fd, err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("pre-opened listener (fd %d): %w; run the module with the wasm driver and a port named http", fd, err)
	}
	return ln, nil
}

// stopContext never ends: a WASI module gets no signals, and waiting for
// one (os/signal) would block the module's only thread. The wasm driver
// stops a module by ending it.
func stopContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// tty: WASI has no terminals.
func tty([]string) int {
	fmt.Println("tty=false rows=0 cols=0")
	return 0
}
