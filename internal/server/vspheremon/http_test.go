package vspheremon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// TestAddRefusesBadConnections: each refusal is one sentence with the
// field it is about, and stores nothing.
func TestAddRefusesBadConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("https://%s/sdk", l.Addr())
	l.Close()
	st := newStore()
	srv := serve(t, newMonitor(st, front{}))
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
		want       string
	}{
		{"bad name", `{"name":"Not A Name","url":"https://vc/sdk","user":"u","password":"p"}`, 400, "name", "connection name"},
		{"reserved name", `{"name":"gantry","url":"https://vc/sdk","user":"u","password":"p"}`, 400, "name", "reserved for Gantry's own VMs"},
		{"no user", `{"name":"vc","url":"https://vc/sdk","password":"p"}`, 400, "", ""},
		{"unreachable", `{"name":"vc","url":"` + closed + `","user":"u","password":"p","insecure":true}`, 400, "url", "cannot reach"},
	} {
		code, body := call(t, http.MethodPut, srv.URL+"/v1/vsphere/connections", tc.body)
		var e api.Error
		json.Unmarshal([]byte(body), &e)
		if code != tc.status || e.Field != tc.field || !strings.Contains(e.Error, tc.want) || strings.Count(strings.TrimSpace(e.Error), "\n") > 0 {
			t.Errorf("%s: %d %s, want %d about %q saying %q", tc.name, code, body, tc.status, tc.field, tc.want)
		}
	}
	if len(st.conns) != 0 {
		t.Errorf("refused connections stored: %v", st.conns)
	}
}

// TestConnectionLifecycle: a connection is tried before it is stored,
// listed without its password, refused a second time, and removed once;
// unknown names are 404 with the command that lists the known ones.
func TestConnectionLifecycle(t *testing.T) {
	sim, _ := startSim(t)
	st := newStore()
	m := newMonitor(st, front{})
	srv := serve(t, m)
	req, _ := json.Marshal(api.VSphereConnectRequest{Name: "sim", URL: sim.URL, User: "gantry", Password: "simulated", CACert: sim.CACert})
	code, body := call(t, http.MethodPut, srv.URL+"/v1/vsphere/connections", string(req))
	if code != http.StatusOK || strings.Contains(body, "simulated") {
		t.Fatalf("add: %d %s", code, body)
	}
	if _, ok := st.conns["sim"]; !ok {
		t.Fatal("the connection was not stored")
	}
	select {
	case <-m.wake:
	default:
		t.Error("adding a connection did not wake the monitor's loop")
	}
	if code, body := call(t, http.MethodPut, srv.URL+"/v1/vsphere/connections", string(req)); code != http.StatusConflict || !strings.Contains(body, "gantry vsphere remove sim") {
		t.Errorf("add twice: %d %s, want 409 naming the remove command", code, body)
	}
	code, body = call(t, http.MethodGet, srv.URL+"/v1/vsphere/connections", "")
	var list []api.VSphereConnection
	if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].Name != "sim" || strings.Contains(body, "simulated") {
		t.Errorf("list: %d %s, want sim without its password", code, body)
	}
	if code, body := call(t, http.MethodDelete, srv.URL+"/v1/vsphere/connections/sim", ""); code != http.StatusOK {
		t.Errorf("remove: %d %s", code, body)
	}
	for _, path := range []string{"/v1/vsphere/connections/sim", "/v1/vsphere/status/sim", "/v1/vsphere/history/vm-1"} {
		method := http.MethodGet
		if strings.HasPrefix(path, "/v1/vsphere/connections/") {
			method = http.MethodDelete
		}
		if code, body := call(t, method, srv.URL+path, ""); code != http.StatusNotFound || !strings.Contains(body, "gantry vsphere") {
			t.Errorf("%s %s: %d %s, want 404 naming the command that lists what exists", method, path, code, body)
		}
	}
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/vsphere/status", ""); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("status with no collector and no Gantry VM: %d %s, want []", code, body)
	}
}

// TestFollowerForwardsLeaderOnly: on a server that does not lead, every
// endpoint but the list (read from the store) goes to the leader, saying
// what only the leader has.
func TestFollowerForwardsLeaderOnly(t *testing.T) {
	st := newStore()
	srv := serve(t, newMonitor(st, front{follower: true}))
	for _, tc := range []struct{ method, path, what string }{
		{http.MethodPut, "/v1/vsphere/connections", WhatCollectors},
		{http.MethodDelete, "/v1/vsphere/connections/sim", WhatCollectors},
		{http.MethodGet, "/v1/vsphere/status", WhatCollectors},
		{http.MethodGet, "/v1/vsphere/status/sim", WhatCollectors},
		{http.MethodGet, "/v1/vsphere/history/vm-1", "the vSphere history"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(`{}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Forwarded-For-Test") != tc.what {
			t.Errorf("%s %s on a follower: %s (forwarded for %q), want forwarded for %q", tc.method, tc.path, resp.Status, resp.Header.Get("X-Forwarded-For-Test"), tc.what)
		}
	}
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/vsphere/connections", ""); code != http.StatusOK {
		t.Errorf("list on a follower: %d %s, want the store's list", code, body)
	}
}
