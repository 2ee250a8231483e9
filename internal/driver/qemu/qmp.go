package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/driver"
)

// qmpConn is a QMP session: the greeting read, capabilities negotiated,
// one command at a time.
type qmpConn struct {
	c net.Conn
	r *bufio.Reader
}

// maxSunPath is the longest unix socket path connect accepts.
const maxSunPath = 107

// dialQMP connects to the QMP socket at path. A path too long for a unix
// socket is reached through /proc/self/fd/<dir>, which is short.
func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	addr := path
	if len(path) > maxSunPath {
		dir, err := os.Open(filepath.Dir(path))
		if err != nil {
			return nil, err
		}
		defer dir.Close()
		addr = "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, err
	}
	q := &qmpConn{c: c, r: bufio.NewReader(c)}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		c.Close()
		return nil, fmt.Errorf("no QMP greeting: %v", err)
	}
	if _, err := q.run("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.c.Close() }

func (q *qmpConn) read(v any) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// run executes one command and returns its "return" value; events that
// arrive meanwhile are skipped.
func (q *qmpConn) run(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.read(&resp); err != nil {
			if errors.Is(err, syscall.ECONNRESET) {
				return nil, fmt.Errorf("QMP %s: QEMU closed the connection", cmd)
			}
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if resp.Event != "" {
			continue
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
		}
		return resp.Return, nil
	}
}

// qmpDo connects, runs one command and disconnects.
func qmpDo(ctx context.Context, path, cmd string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, path)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return q.run(cmd, nil)
}

// queryStatus is QMP query-status's VM state ("running", "paused",
// "shutdown", ...).
func queryStatus(ctx context.Context, path string) (string, error) {
	raw, err := qmpDo(ctx, path, "query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("QMP query-status: %w", err)
	}
	return st.Status, nil
}

// queryBlockStats is QMP query-blockstats: the guest's read and write
// counters of each virtual disk since QEMU started.
func queryBlockStats(ctx context.Context, path string) ([]driver.DiskStats, error) {
	raw, err := qmpDo(ctx, path, "query-blockstats")
	if err != nil {
		return nil, err
	}
	return parseBlockStats(raw)
}

// parseBlockStats reads query-blockstats's answer. Only each device's own
// "stats" count: they are the guest's requests as the device model made
// them. The nested "parent" and "backing" entries are the image layers
// below (the overlay file, the base image) and would count the same
// reads again, differently.
func parseBlockStats(raw json.RawMessage) ([]driver.DiskStats, error) {
	var devs []struct {
		Device   string `json:"device"`
		QDev     string `json:"qdev"`
		NodeName string `json:"node-name"`
		Stats    *struct {
			RdBytes      uint64 `json:"rd_bytes"`
			WrBytes      uint64 `json:"wr_bytes"`
			RdOperations uint64 `json:"rd_operations"`
			WrOperations uint64 `json:"wr_operations"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(raw, &devs); err != nil {
		return nil, fmt.Errorf("QMP query-blockstats: %w", err)
	}
	out := make([]driver.DiskStats, 0, len(devs))
	for _, d := range devs {
		if d.Stats == nil {
			continue
		}
		name := d.Device
		if name == "" {
			name = d.QDev
		}
		if name == "" {
			name = d.NodeName
		}
		out = append(out, driver.DiskStats{Device: name, ReadBytes: d.Stats.RdBytes, WriteBytes: d.Stats.WrBytes,
			ReadOps: d.Stats.RdOperations, WriteOps: d.Stats.WrOperations})
	}
	return out, nil
}
