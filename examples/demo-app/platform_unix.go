//go:build !wasip1

package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"unsafe"
)

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// stopContext ends on SIGTERM or SIGINT.
func stopContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func tty(args []string) int {
	fs := flag.NewFlagSet("demo-app tty", flag.ContinueOnError)
	wait := fs.Bool("wait-winch", false, "print the size again after the terminal is resized")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	rows, cols, ok := termSize(os.Stdout.Fd())
	fmt.Printf("tty=%t rows=%d cols=%d\n", ok, rows, cols)
	if !*wait || !ok {
		return 0
	}
	<-winch
	rows, cols, _ = termSize(os.Stdout.Fd())
	fmt.Printf("resized rows=%d cols=%d\n", rows, cols)
	return 0
}

// termSize reads a terminal's size with TIOCGWINSZ; ok is false when fd
// is not a terminal.
func termSize(fd uintptr) (rows, cols int, ok bool) {
	var ws struct{ Row, Col, X, Y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
	if errno != 0 {
		return 0, 0, false
	}
	return int(ws.Row), int(ws.Col), true
}
