package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/exec"
)

// recordedBlockStats is QEMU 7.2's answer to query-blockstats, recorded
// from the project's test guest (scripts/build-vm-guest.sh) booted under
// TCG with its image overlay on virtio, after the guest read the first
// MiB of /dev/vda twice and wrote 64 KiB: the device's own counters, and
// nested parent (the overlay file) and backing (the base image) entries.
func recordedBlockStats(t *testing.T) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("testdata/query-blockstats.json")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Return
}

func TestParseBlockStatsRecorded(t *testing.T) {
	got, err := parseBlockStats(recordedBlockStats(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []driver.DiskStats{{Device: "virtio0", ReadBytes: 4198912, ReadOps: 6, WriteBytes: 65536, WriteOps: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v (the device's own counters, not its parent's or backing image's)", got, want)
	}
}

func TestParseBlockStats(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []driver.DiskStats
		err      bool
	}{
		{"no disks", `[]`, []driver.DiskStats{}, false},
		{"anonymous backend named by its qdev", `[{"device":"","qdev":"/machine/peripheral/disk0/virtio-backend","stats":{"rd_bytes":1,"wr_bytes":2,"rd_operations":3,"wr_operations":4}}]`,
			[]driver.DiskStats{{Device: "/machine/peripheral/disk0/virtio-backend", ReadBytes: 1, WriteBytes: 2, ReadOps: 3, WriteOps: 4}}, false},
		{"node only", `[{"node-name":"drive0","stats":{"rd_bytes":7}}]`, []driver.DiskStats{{Device: "drive0", ReadBytes: 7}}, false},
		{"entry without stats left out", `[{"device":"ide0"}]`, []driver.DiskStats{}, false},
		{"not a list", `{"device":"virtio0"}`, nil, true},
	} {
		got, err := parseBlockStats(json.RawMessage(tc.in))
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("%s: got %+v, %v; want %+v (error %v)", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestQueryBlockStatsOverQMP serves the recorded answer on a unix socket
// the way QEMU speaks QMP (greeting, capabilities, an event arriving
// before the answer) and reads it through the client.
func TestQueryBlockStatsOverQMP(t *testing.T) {
	ret := recordedBlockStats(t)
	sock := filepath.Join(t.TempDir(), QMPFile)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var cmds []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		w := bufio.NewWriter(c)
		w.WriteString(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}` + "\n")
		w.Flush()
		r := bufio.NewScanner(c)
		for r.Scan() {
			var req struct {
				Execute string `json:"execute"`
			}
			json.Unmarshal(r.Bytes(), &req)
			cmds = append(cmds, req.Execute)
			switch req.Execute {
			case "qmp_capabilities":
				w.WriteString(`{"return": {}}` + "\n")
			case "query-blockstats":
				w.WriteString(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NIC_RX_FILTER_CHANGED", "data": {"path": "/machine/peripheral-anon/device[0]/virtio-backend"}}` + "\n")
				w.WriteString(`{"return": ` + string(ret) + "}\n")
			default:
				w.WriteString(`{"error": {"class": "CommandNotFound", "desc": "nope"}}` + "\n")
			}
			w.Flush()
		}
	}()
	got, err := queryBlockStats(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if len(got) != 1 || got[0].Device != "virtio0" || got[0].ReadBytes != 4198912 || got[0].WriteOps != 1 {
		t.Errorf("disks %+v", got)
	}
	if !reflect.DeepEqual(cmds, []string{"qmp_capabilities", "query-blockstats"}) {
		t.Errorf("commands sent %v", cmds)
	}
}

// TestNetworkStats: the executor's two frame streams become net0's
// counters from the guest's side; a VM started without them (by a gantry
// before network counting) has none.
func TestNetworkStats(t *testing.T) {
	for _, tc := range []struct {
		name   string
		counts map[string]exec.FrameCount
		want   []driver.NetworkStats
	}{
		{name: "no totals yet", counts: nil, want: nil},
		{name: "one stream only", counts: map[string]exec.FrameCount{StreamSent: {Frames: 1, Bytes: 60}}, want: nil},
		{
			name:   "sent is the guest's transmit, received its receive",
			counts: map[string]exec.FrameCount{StreamSent: {Frames: 12, Bytes: 1500}, StreamReceived: {Frames: 800, Bytes: 1 << 20}},
			want:   []driver.NetworkStats{{Device: "net0", RxBytes: 1 << 20, TxBytes: 1500, RxPackets: 800, TxPackets: 12}},
		},
	} {
		if got := networkStats(tc.counts); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
