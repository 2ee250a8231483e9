//go:build linux

// Command gantry-guest-init is the /init of the test guest that
// scripts/build-vm-guest.sh builds: a Debian cloud kernel and an initramfs
// holding this static binary and the kernel modules it needs. It is
// Gantry's own VM workload for the qemu driver's tests, example and
// benchmark, the VM twin of examples/demo-app.
//
// As process 1 it mounts /dev, /proc and /sys, loads the modules named in
// /modules.order in that order (finit_module), configures eth0 as
// 10.0.2.15/24 (QEMU's user-mode network) with 10.0.2.2 as the gateway,
// and serves HTTP on port 8080 (gantry.port=N on the kernel command line
// changes it):
//
//	GET /          {"hostname":…,"kind":"vm","count":N,"version":…}
//	GET /healthz   200 "ok"
//	GET /disk      reads the first MiB of the virtual disk /dev/vda (the
//	               job's image, through virtio_blk), its buffer cache
//	               dropped first so every request reaches the device:
//	               {"device":"/dev/vda","read":N}; ?bytes=N reads N
//	               (at most 16 MiB); POST writes zeros there instead and
//	               syncs them ({"written":N}); 404 when the VM has no disk
//	GET /net       answers ?bytes=N zero bytes (default 1 MiB, at most
//	               64 MiB); POST reads the whole body and answers
//	               {"received":N}, so that a test can move a known amount
//	               through the VM's network
//
// An ACPI power-button press (QMP system_powerdown, sent by the qemu
// driver's graceful stop) powers the guest off. If anything fails it says
// so on the console and powers off, so QEMU (run with -no-reboot) exits.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const version = "v1"

// sysFinitModule is finit_module(2) on amd64, the guest's architecture.
const sysFinitModule = 313

func say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "gantry-guest-init: "+format+"\n", args...)
}

func main() {
	if err := run(); err != nil {
		say("failed: %v", err)
	}
	poweroff()
}

func poweroff() {
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	for _, m := range []struct{ fs, dir string }{{"devtmpfs", "/dev"}, {"proc", "/proc"}, {"sysfs", "/sys"}} {
		os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && err != syscall.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dir, err)
		}
	}
	order, err := os.ReadFile("/modules.order")
	if err != nil {
		return fmt.Errorf("read the module list: %w", err)
	}
	for _, name := range strings.Fields(string(order)) {
		if err := loadModule("/lib/modules/" + name + ".ko"); err != nil {
			return err
		}
	}
	go watchPowerButton()
	if err := ifUp("lo", nil, nil); err != nil {
		return err
	}
	var lastErr error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if lastErr = ifUp("eth0", net.IPv4(10, 0, 2, 15).To4(), net.IPv4(255, 255, 255, 0).To4()); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return fmt.Errorf("eth0 never came up: %w", lastErr)
	}
	port := 8080
	if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(cmdline)) {
			if v, ok := strings.CutPrefix(f, "gantry.port="); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65536 {
					port = n
				}
			}
		}
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	say("eth0 10.0.2.15/24 up, serving HTTP on port %d", port)
	var count atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"hostname": host, "kind": "vm", "count": count.Add(1), "version": version})
	})
	mux.HandleFunc("/disk", serveDisk)
	mux.HandleFunc("/net", serveNet)
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// loadModule loads one kernel module; one already loaded (or built in)
// is fine.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module: %w", err)
	}
	defer f.Close()
	params := []byte{0}
	_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 && errno != syscall.EEXIST {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), errno)
	}
	return nil
}

// ifreq is struct ifreq: a name and a 24-byte union.
type ifreq struct {
	name [16]byte
	data [24]byte
}

func ioctl(fd int, req uintptr, r *ifreq) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(r))); e != 0 {
		return e
	}
	return nil
}

// ifUp sets the interface's address and netmask (when given) and brings
// it up.
func ifUp(name string, addr, mask net.IP) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var r ifreq
	copy(r.name[:], name)
	sockaddr := func(ip net.IP) {
		r.data = [24]byte{}
		binary.LittleEndian.PutUint16(r.data[0:], syscall.AF_INET)
		copy(r.data[4:8], ip)
	}
	if addr != nil {
		sockaddr(addr)
		if err := ioctl(fd, syscall.SIOCSIFADDR, &r); err != nil {
			return fmt.Errorf("%s: set address: %w", name, err)
		}
		sockaddr(mask)
		if err := ioctl(fd, syscall.SIOCSIFNETMASK, &r); err != nil {
			return fmt.Errorf("%s: set netmask: %w", name, err)
		}
	}
	r.data = [24]byte{}
	if err := ioctl(fd, syscall.SIOCGIFFLAGS, &r); err != nil {
		return fmt.Errorf("%s: read flags: %w", name, err)
	}
	flags := binary.LittleEndian.Uint16(r.data[0:]) | syscall.IFF_UP | syscall.IFF_RUNNING
	binary.LittleEndian.PutUint16(r.data[0:], flags)
	if err := ioctl(fd, syscall.SIOCSIFFLAGS, &r); err != nil {
		return fmt.Errorf("%s: bring up: %w", name, err)
	}
	if addr != nil {
		addDefaultRoute(fd)
	}
	return nil
}

// addDefaultRoute points the default route at QEMU's user-mode gateway;
// a failure only costs outbound traffic, which the demo does not need.
func addDefaultRoute(fd int) {
	// struct rtentry on amd64: pad(8) dst(16) gateway(16) genmask(16)
	// flags(2) ... 120 bytes in all.
	var rt [120]byte
	binary.LittleEndian.PutUint16(rt[8:], syscall.AF_INET)
	binary.LittleEndian.PutUint16(rt[24:], syscall.AF_INET)
	copy(rt[28:32], net.IPv4(10, 0, 2, 2).To4())
	binary.LittleEndian.PutUint16(rt[40:], syscall.AF_INET)
	binary.LittleEndian.PutUint16(rt[56:], syscall.RTF_UP|syscall.RTF_GATEWAY)
	syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCADDRT, uintptr(unsafe.Pointer(&rt[0])))
}

// watchPowerButton powers the guest off on an ACPI power-button press
// (KEY_POWER on any input device, which the button and evdev modules
// provide).
func watchPowerButton() {
	seen := map[string]bool{}
	for {
		paths, _ := filepath.Glob("/dev/input/event*")
		for _, p := range paths {
			if seen[p] {
				continue
			}
			seen[p] = true
			go func(p string) {
				f, err := os.Open(p)
				if err != nil {
					return
				}
				defer f.Close()
				var ev [24]byte // struct input_event on 64-bit: timeval, type, code, value
				for {
					if _, err := f.Read(ev[:]); err != nil {
						return
					}
					typ := binary.LittleEndian.Uint16(ev[16:])
					code := binary.LittleEndian.Uint16(ev[18:])
					if typ == 1 && code == 116 { // EV_KEY, KEY_POWER
						say("power button pressed, powering off")
						poweroff()
					}
				}
			}(p)
		}
		time.Sleep(time.Second)
	}
}

// blkflsbuf is the BLKFLSBUF ioctl: drop a block device's buffer cache.
const blkflsbuf = 0x1261

// serveDisk reads (GET) or writes (POST) the start of /dev/vda, so that a
// test can make the guest use its disk and watch the VM's disk counters.
func serveDisk(w http.ResponseWriter, r *http.Request) {
	const dev = "/dev/vda"
	n := 1 << 20
	if v, err := strconv.Atoi(r.URL.Query().Get("bytes")); err == nil && v > 0 && v <= 16<<20 {
		n = v
	}
	flag := os.O_RDONLY
	if r.Method == http.MethodPost {
		flag = os.O_WRONLY
	}
	f, err := os.OpenFile(dev, flag, 0)
	if err != nil {
		http.Error(w, "this VM has no disk "+dev+": "+err.Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	buf := make([]byte, n)
	var done int
	if r.Method == http.MethodPost {
		if done, err = f.WriteAt(buf, 0); err == nil {
			err = f.Sync()
		}
	} else {
		syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), blkflsbuf, 0)
		done, err = f.ReadAt(buf, 0)
	}
	if err != nil {
		http.Error(w, dev+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	key := "read"
	if r.Method == http.MethodPost {
		key = "written"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"device": dev, key: done})
}

// serveNet sends (GET) or takes in (POST) a known number of bytes, so that
// a test can watch the VM's network counters.
func serveNet(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"received": n})
		return
	}
	n := 1 << 20
	if v, err := strconv.Atoi(r.URL.Query().Get("bytes")); err == nil && v >= 0 && v <= 64<<20 {
		n = v
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	buf := make([]byte, 32<<10)
	for n > 0 {
		k := min(n, len(buf))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}
