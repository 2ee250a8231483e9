package wasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"golang.org/x/sys/unix"
)

// The module's waits on its sockets.
//
// wazero's poll_oneoff answers a subscription on a socket in non-blocking
// mode at once, as ready, and waits on stdin for one in blocking mode.
// Every socket of a Go module is non-blocking (its runtime sets the
// flag), so a Go module serving HTTP kept a whole CPU busy while idle: its
// netpoller asked which sockets were ready, heard "all of them", found
// nothing to accept or read (EAGAIN) and asked again, thousands of times
// a second.
//
// The runner's poll_oneoff waits instead on the host sockets behind the
// module's descriptors (ppoll), with the subscriptions' clock as the
// timeout, and reports those that are ready. It knows which host socket
// stands behind which descriptor from a table: the listeners, by their
// port, once the module is instantiated; each accepted connection, from
// a wrapped sock_accept; fd_close and fd_renumber are wrapped to keep the
// table true. A call with a subscription on anything else (stdin, a
// file, a descriptor the table lacks) is wazero's own.
//
// wazero (v1.12.0) closes an accepted connection only in name: its
// close marks the connection closed and then asks for a shutdown that
// returns at once because the connection is marked closed. The peer
// never saw the end of the connection (a response delimited by it never
// ended) and the host socket stayed open, in CLOSE-WAIT, until a garbage
// collection of the runner ran its finalizer; an idle runner collects
// rarely. So when the module closes a connection (or shuts down both
// directions) the runner shuts the host socket down itself, and on close
// puts /dev/null in its place, which frees the socket now and keeps the
// descriptor's number taken until the finalizer closes it; a collection
// every closeCollect connections lets the finalizers run.

// WASI preview 1 layouts (subscription: 48 bytes, event: 32).
const (
	subscriptionSize = 48
	eventSize        = 32

	eventTypeClock   = 0
	eventTypeFdRead  = 1
	eventTypeFdWrite = 2

	errnoBadf              = 8
	eventFdReadwriteHangup = 1
	sdflagsRDWR            = 3

	// closeCollect is how many closed connections the runner lets
	// stand (as /dev/null) before it collects garbage.
	closeCollect = 64
)

var le = binary.LittleEndian

// socketTable maps the module's socket descriptors to the host's.
type socketTable struct {
	mu   sync.Mutex
	host map[int32]hostSocket
	// wake is a pipe whose read end every wait watches: written once the
	// run ends, so a module waiting on its sockets returns to be stopped.
	wake    [2]int
	devnull int // put in the place of a closed connection
	closed  int // connections closed since the last collection
}

type hostSocket struct {
	fd   int
	conn bool // an accepted connection, not a listener
}

func newSocketTable() (*socketTable, error) {
	t := &socketTable{host: map[int32]hostSocket{}}
	if err := unix.Pipe2(t.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("make the socket table's wake pipe: %w", err)
	}
	var err error
	if t.devnull, err = unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("open /dev/null for the socket table: %w", err)
	}
	return t, nil
}

// wakeOnDone makes every wait return once ctx ends.
func (t *socketTable) wakeOnDone(ctx context.Context) {
	go func() {
		<-ctx.Done()
		unix.Write(t.wake[1], []byte{0})
	}()
}

// instantiateWASI instantiates WASI preview 1 in rt, with poll_oneoff,
// sock_accept, sock_shutdown, fd_close and fd_renumber going through the
// table.
func (t *socketTable) instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	std, err := wasi_snapshot_preview1.NewBuilder(rt).Compile(ctx)
	if err != nil {
		return err
	}
	defer std.Close(ctx)
	defs := std.ExportedFunctions()
	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	for name, wrap := range map[string]func(api.GoModuleFunction) api.GoModuleFunc{
		"poll_oneoff": t.pollOneoff, "sock_accept": t.sockAccept, "sock_shutdown": t.sockShutdown,
		"fd_close": t.fdClose, "fd_renumber": t.fdRenumber,
	} {
		d, ok := defs[name]
		if !ok {
			return fmt.Errorf("WASI has no %s to wrap", name)
		}
		orig, ok := d.GoFunction().(api.GoModuleFunction)
		if !ok {
			return fmt.Errorf("WASI's %s is not a Go function", name)
		}
		b.NewFunctionBuilder().WithGoModuleFunction(wrap(orig), d.ParamTypes(), d.ResultTypes()).
			WithParameterNames(d.ParamNames()...).WithResultNames(d.ResultNames()...).Export(name)
	}
	_, err = b.Instantiate(ctx)
	return err
}

// addListeners enters the module's listeners, which wazero opened when it
// instantiated the module: the host's listening socket on each port.
func (t *socketTable) addListeners(ls []listener) {
	byPort := map[int]int32{}
	for _, l := range ls {
		byPort[l.Port] = int32(l.FD)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range socketFDs(nil) {
		sa, err := unix.Getsockname(h)
		if err != nil {
			continue
		}
		var port int
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			port = a.Port
		case *unix.SockaddrInet6:
			port = a.Port
		}
		if fd, ok := byPort[port]; ok {
			if acc, err := unix.GetsockoptInt(h, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && acc == 1 {
				t.host[fd] = hostSocket{fd: h}
			}
		}
	}
}

// sockAccept enters the accepted connection: the one host socket of the
// process the table does not hold yet (the runner has no sockets of its
// own).
func (t *socketTable) sockAccept(orig api.GoModuleFunction) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		resultFD := uint32(stack[2])
		orig.Call(ctx, mod, stack)
		if stack[0] != 0 {
			return
		}
		fd, ok := mod.Memory().ReadUint32Le(resultFD)
		if !ok {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		known := make(map[int]bool, len(t.host))
		for _, h := range t.host {
			known[h.fd] = true
		}
		found := -1
		for _, h := range socketFDs(known) {
			if acc, err := unix.GetsockoptInt(h, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && acc == 1 {
				continue // a listener, not the connection
			}
			if found >= 0 { // more than one: leave it to wazero's poll
				return
			}
			found = h
		}
		if found >= 0 {
			t.host[int32(fd)] = hostSocket{fd: found, conn: true}
		}
	}
}

func (t *socketTable) fdClose(orig api.GoModuleFunction) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		fd := int32(stack[0])
		orig.Call(ctx, mod, stack)
		if stack[0] != 0 {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		h, ok := t.host[fd]
		delete(t.host, fd)
		if !ok || !h.conn {
			return
		}
		// See the top of this file: end the connection, free the socket,
		// keep the number until the finalizer closes it.
		unix.Shutdown(h.fd, unix.SHUT_RDWR)
		unix.Dup3(t.devnull, h.fd, unix.O_CLOEXEC)
		if t.closed++; t.closed >= closeCollect {
			t.closed = 0
			go runtime.GC()
		}
	}
}

// sockShutdown shuts the host connection down both ways when the module
// asks for it, which wazero's own does not do (see the top of this file).
func (t *socketTable) sockShutdown(orig api.GoModuleFunction) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		fd, how := int32(stack[0]), stack[1]
		orig.Call(ctx, mod, stack)
		if stack[0] != 0 || how != sdflagsRDWR {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if h, ok := t.host[fd]; ok && h.conn {
			unix.Shutdown(h.fd, unix.SHUT_RDWR)
		}
	}
}

func (t *socketTable) fdRenumber(orig api.GoModuleFunction) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		from, to := int32(stack[0]), int32(stack[1])
		orig.Call(ctx, mod, stack)
		if stack[0] == 0 {
			t.mu.Lock()
			h, ok := t.host[from]
			delete(t.host, from)
			delete(t.host, to)
			if ok {
				t.host[to] = h
			}
			t.mu.Unlock()
		}
	}
}

// pollOneoff waits on the host sockets of the subscriptions; see the top
// of this file.
func (t *socketTable) pollOneoff(orig api.GoModuleFunction) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		in, out, n, resultNevents := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
		mem := mod.Memory()
		subs, ok := mem.Read(in, n*subscriptionSize)
		if n == 0 || !ok {
			orig.Call(ctx, mod, stack)
			return
		}
		// What to wait for: one pollfd per fd subscription (index i of
		// subscription i), the clock's timeout (<0: none).
		timeout := time.Duration(-1)
		pfds := make([]unix.PollFd, 0, n+1)
		forSub := make([]int, n)
		t.mu.Lock()
		for i := range n {
			s := subs[i*subscriptionSize:]
			forSub[i] = -1
			switch s[8] {
			case eventTypeClock:
				if le.Uint16(s[40:]) != 0 { // absolute time: wazero's answer
					t.mu.Unlock()
					orig.Call(ctx, mod, stack)
					return
				}
				if d := time.Duration(le.Uint64(s[24:])); timeout < 0 || d < timeout {
					timeout = d
				}
			case eventTypeFdRead, eventTypeFdWrite:
				h, ok := t.host[int32(le.Uint32(s[16:]))]
				if !ok {
					t.mu.Unlock()
					orig.Call(ctx, mod, stack)
					return
				}
				ev := int16(unix.POLLIN)
				if s[8] == eventTypeFdWrite {
					ev = unix.POLLOUT
				}
				forSub[i] = len(pfds)
				pfds = append(pfds, unix.PollFd{Fd: int32(h.fd), Events: ev})
			default:
				t.mu.Unlock()
				orig.Call(ctx, mod, stack)
				return
			}
		}
		t.mu.Unlock()
		if len(pfds) == 0 { // the clock alone: wazero sleeps
			orig.Call(ctx, mod, stack)
			return
		}
		events, ok := mem.Read(out, n*eventSize)
		if !ok {
			orig.Call(ctx, mod, stack)
			return
		}
		pfds = append(pfds, unix.PollFd{Fd: int32(t.wake[0]), Events: unix.POLLIN})
		ready := wait(pfds, timeout)

		clear(events)
		nevents := uint32(0)
		put := func(i uint32, typ byte, errno uint16, flags uint16) {
			e := events[nevents*eventSize:]
			copy(e[:8], subs[i*subscriptionSize:i*subscriptionSize+8])
			le.PutUint16(e[8:], errno)
			e[10] = typ
			le.PutUint16(e[24:], flags)
			nevents++
		}
		for i := range n {
			typ := subs[i*subscriptionSize+8]
			switch {
			case typ == eventTypeClock:
				if ready == 0 {
					put(i, typ, 0, 0)
				}
			case pfds[forSub[i]].Revents != 0:
				re := pfds[forSub[i]].Revents
				var errno, flags uint16
				if re&unix.POLLNVAL != 0 {
					errno = errnoBadf
				}
				if re&unix.POLLHUP != 0 {
					flags = eventFdReadwriteHangup
				}
				put(i, typ, errno, flags)
			}
		}
		mem.WriteUint32Le(resultNevents, nevents)
		stack[0] = 0
	}
}

// wait polls pfds (the last is the wake pipe) until one is ready or the
// timeout (<0: none) passes, and returns how many of the others are
// ready. Signals (the Go runtime's preemption among them) do not cut the
// wait short.
func wait(pfds []unix.PollFd, timeout time.Duration) int {
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		var ts *unix.Timespec
		if timeout >= 0 {
			left := max(time.Until(deadline), 0)
			t := unix.NsecToTimespec(left.Nanoseconds())
			ts = &t
		}
		n, err := unix.Ppoll(pfds, ts, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return 0
		}
		if pfds[len(pfds)-1].Revents != 0 {
			n-- // the run ended: the module returns to be stopped
		}
		return n
	}
}

// socketFDs lists the descriptors of this process that are sockets,
// leaving out those in skip (which are not looked at: an accept among
// many open connections reads the links of the others only).
func socketFDs(skip map[int]bool) []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || skip[fd] {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			out = append(out, fd)
		}
	}
	return out
}
