package vspheremon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// Front is how the handlers sit on the server's API. The server's
// adapter is one.
type Front interface {
	// OnLeader returns false on the leader, whose handler then serves the
	// request; elsewhere it forwards the request to the leader, writes its
	// answer and returns true, or returns true and the error to answer
	// with. what names what only the leader has, for the error's sentence.
	OnLeader(w http.ResponseWriter, r *http.Request, what string) (bool, error)
	// DecodeBody reads the request's JSON body into v under the server's
	// limits, rejecting unknown fields.
	DecodeBody(w http.ResponseWriter, r *http.Request, v any) error
	// WriteJSON answers v as the server answers its own endpoints.
	WriteJSON(w http.ResponseWriter, status int, v any)
}

// Handle registers a handler at a pattern of the server's API; the server
// authorizes each request before the handler runs and answers the error
// it returns (an *Error with its status and field).
type Handle func(pattern string, h func(http.ResponseWriter, *http.Request) error)

// Error is a handler's error with its HTTP status and, when it is about
// one, the request field.
type Error struct {
	Status int
	Msg    string
	Field  string
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the server answers e with.
func (e *Error) HTTPStatus() int { return e.Status }

// APIField is the request field e is about ("" for none).
func (e *Error) APIField() string { return e.Field }

func notFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

// WhatCollectors is what only the leader holds of the monitor, for
// OnLeader's sentences.
const WhatCollectors = "the vCenter collectors"

// Routes registers the /v1/vsphere endpoints.
func (m *Monitor) Routes(handle Handle) {
	handle("GET /v1/vsphere/connections", m.handleList)
	handle("PUT /v1/vsphere/connections", m.handleAdd)
	handle("DELETE /v1/vsphere/connections/{name}", m.handleRemove)
	handle("GET /v1/vsphere/status", m.handleStatus)
	handle("GET /v1/vsphere/status/{name}", m.handleStatusOne)
	handle("GET /v1/vsphere/history/{key}", m.handleHistory)
}

func (m *Monitor) handleList(w http.ResponseWriter, r *http.Request) error {
	conns, err := m.p.Connections.VSphereConnections(r.Context())
	if err != nil {
		return err
	}
	out := []api.VSphereConnection{}
	for _, raw := range conns {
		var c vsphere.Connection
		if err := json.Unmarshal(raw, &c); err == nil {
			out = append(out, c.Public())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	m.p.Front.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (m *Monitor) handleAdd(w http.ResponseWriter, r *http.Request) error {
	// The leader tries the connection: it is the server that will collect
	// from it, so the vCenter must be reachable from there.
	if done, err := m.p.Front.OnLeader(w, r, WhatCollectors); done {
		return err
	}
	var req api.VSphereConnectRequest
	if err := m.p.Front.DecodeBody(w, r, &req); err != nil {
		return err
	}
	if !api.ValidName(req.Name) {
		return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("connection name %q %s", req.Name, api.NameRule), Field: "name"}
	}
	if req.Name == vsphere.GantrySource {
		return &Error{Status: http.StatusBadRequest, Field: "name",
			Msg: fmt.Sprintf("connection name %q is reserved for Gantry's own VMs (their gantry_vsphere_* series carry vcenter=%q); choose another", req.Name, vsphere.GantrySource)}
	}
	c := vsphere.Connection{Name: req.Name, URL: req.URL, User: req.User, Password: req.Password, CACert: req.CACert,
		Insecure: req.Insecure, DrainOnMaintenance: req.DrainOnMaintenance, CreateTime: m.p.Now()}
	if err := c.Validate(); err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	if u, err := vsphere.ParseURL(c.URL); err == nil {
		c.URL = u.String()
	}
	if existing, err := m.p.Connections.VSphereConnections(r.Context()); err != nil {
		return err
	} else if _, ok := existing[c.Name]; ok {
		return &Error{Status: http.StatusConflict, Msg: fmt.Sprintf("vSphere connection %s exists: remove it first with 'gantry vsphere remove %s'", c.Name, c.Name)}
	}
	// The connection is tried before anything is stored.
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	cl, err := vsphere.Dial(ctx, c)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: err.Error(), Field: "url"}
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	cl.Logout(lctx)
	lcancel()
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode vSphere connection %s: %w", c.Name, err)
	}
	if err := m.p.Connections.CreateVSphereConnection(r.Context(), c.Name, raw); err != nil {
		if errors.Is(err, state.ErrConflict) {
			return &Error{Status: http.StatusConflict, Msg: err.Error()}
		}
		return err
	}
	m.p.Log.Info("vSphere connection added", "vcenter", c.Name, "url", c.URL, "user", c.User)
	m.Notify(nil)
	m.p.Front.WriteJSON(w, http.StatusOK, c.Public())
	return nil
}

func (m *Monitor) handleRemove(w http.ResponseWriter, r *http.Request) error {
	if done, err := m.p.Front.OnLeader(w, r, WhatCollectors); done {
		return err
	}
	name := r.PathValue("name")
	if err := m.p.Connections.DeleteVSphereConnection(r.Context(), name); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return notFound("no vSphere connection named %q: 'gantry vsphere list' shows them", name)
		}
		return err
	}
	m.p.Log.Info("vSphere connection removed", "vcenter", name)
	m.Notify(nil)
	m.p.Front.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// handleStatus lists every connection's status and, after them when there
// are any, Gantry's own VMs under the name "gantry" (the same list as the
// Virtualization page's and the gantry_vsphere_vm_* series). Only the
// leader collects: another server forwards the request to it.
func (m *Monitor) handleStatus(w http.ResponseWriter, r *http.Request) error {
	if done, err := m.p.Front.OnLeader(w, r, WhatCollectors); done {
		return err
	}
	full := r.URL.Query().Get("full") == "true"
	out := []api.VSphereStatus{}
	for _, c := range m.Collectors() {
		out = append(out, m.Status(c, full))
	}
	if vms := m.GantryVMs(); len(vms) > 0 {
		out = append(out, vsphere.GantryStatus(vms, full))
	}
	m.p.Front.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (m *Monitor) handleStatusOne(w http.ResponseWriter, r *http.Request) error {
	if done, err := m.p.Front.OnLeader(w, r, WhatCollectors); done {
		return err
	}
	if r.PathValue("name") == vsphere.GantrySource {
		m.p.Front.WriteJSON(w, http.StatusOK, vsphere.GantryStatus(m.GantryVMs(), true))
		return nil
	}
	for _, c := range m.Collectors() {
		if c.Connection().Name == r.PathValue("name") {
			m.p.Front.WriteJSON(w, http.StatusOK, m.Status(c, true))
			return nil
		}
	}
	return notFound("no vSphere connection named %q: 'gantry vsphere list' shows them", r.PathValue("name"))
}

// handleHistory serves one host's, VM's or datastore's history, by name
// or managed object ID, in the connection ?vcenter= names (default: the
// first that has it).
func (m *Monitor) handleHistory(w http.ResponseWriter, r *http.Request) error {
	if done, err := m.p.Front.OnLeader(w, r, "the vSphere history"); done {
		return err
	}
	key, vc := r.PathValue("key"), r.URL.Query().Get("vcenter")
	for _, c := range m.Collectors() {
		if vc != "" && c.Connection().Name != vc {
			continue
		}
		if h, ok := c.History(key); ok {
			m.p.Front.WriteJSON(w, http.StatusOK, h)
			return nil
		}
	}
	return notFound("no host, VM or datastore named %q in the vSphere inventory: 'gantry vsphere status --json' lists them", key)
}
