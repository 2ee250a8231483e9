package state

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of the virtualization monitor (see keys.go for the layout):
//
//	vsphereconns/<name>               a vCenter connection, password included (JSON)
//	vsphereevents/<vcenter>/<entity>  the latest inventory change of an entity
//
// Connections hold a secret: only the server reads them, and the API
// never returns the password. Each put of an event key is one event of
// topic "vsphere" on the stream; deleting them (when a connection is
// removed) makes none. There is one event key per entity that ever
// changed, so their number is bounded by the inventory's size.
//
// The state package stores both as opaque JSON: their shapes belong to
// internal/vsphere and internal/api.
const (
	kindVSphereConn  = "vsphereconns"
	kindVSphereEvent = "vsphereevents"
)

func (k keys) vsphereConns() string           { return k.prefix + kindVSphereConn + "/" }
func (k keys) vsphereConn(name string) string { return k.vsphereConns() + name }
func (k keys) vsphereEvents(vc string) string { return k.prefix + kindVSphereEvent + "/" + vc + "/" }

// VSphereConnections returns every stored connection's JSON, by name.
func (s *Store) VSphereConnections(ctx context.Context) (map[string][]byte, error) {
	resp, err := s.cli.Get(ctx, s.keys.vsphereConns(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the vSphere connections: %w", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		_, rest := s.keys.split(string(kv.Key))
		out[rest] = kv.Value
	}
	return out, nil
}

// CreateVSphereConnection stores a new connection; ErrConflict when one
// of that name exists.
func (s *Store) CreateVSphereConnection(ctx context.Context, name string, data []byte) error {
	key := s.keys.vsphereConn(name)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return fmt.Errorf("store vSphere connection %s: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("vSphere connection %s exists: remove it first with 'gantry vsphere remove %s': %w", name, name, ErrConflict)
	}
	return nil
}

// DeleteVSphereConnection removes a connection and its event keys;
// ErrNotFound when there is none of that name.
func (s *Store) DeleteVSphereConnection(ctx context.Context, name string) error {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpDelete(s.keys.vsphereConn(name)),
		clientv3.OpDelete(s.keys.vsphereEvents(name), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("remove vSphere connection %s: %w", name, err)
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("vSphere connection %s: %w", name, ErrNotFound)
	}
	return nil
}

// PutVSphereChanges records inventory changes of one vCenter as events,
// in one revision per batch of distinct entities.
func (s *Store) PutVSphereChanges(ctx context.Context, changes []api.VSphereChange) error {
	var ops []clientv3.Op
	used := map[string]bool{}
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.cli.Txn(ctx).Then(ops...).Commit()
		ops, used = nil, map[string]bool{}
		if err != nil {
			return fmt.Errorf("record vSphere events: %w", err)
		}
		return nil
	}
	for _, c := range changes {
		id := c.ID
		if id == "" {
			id = c.Kind + "-" + c.Name
		}
		key := s.keys.vsphereEvents(c.VCenter) + id
		if used[key] || len(ops) >= 100 {
			if err := flush(); err != nil {
				return err
			}
		}
		used[key] = true
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(key, string(b)))
	}
	return flush()
}

// vsphereEvent turns a put of an event key into its event; deletes make
// none.
func vsphereEvent(ev *clientv3.Event, payload []byte) (api.Event, bool) {
	if ev.Type == mvccpb.DELETE {
		return api.Event{}, false
	}
	var c api.VSphereChange
	if err := json.Unmarshal(payload, &c); err != nil || c.Type == "" {
		return api.Event{}, false
	}
	return api.Event{Index: ev.Kv.ModRevision, Topic: api.TopicVSphere, Type: c.Type, Key: c.VCenter + "/" + c.Name, Payload: json.RawMessage(payload)}, true
}

// keepVSphereAttrs carries the vsphere.* attributes the leader set over a
// re-registration of the same machine (same BIOS UUID), so placement
// keeps knowing the node's host until the next match.
func keepVSphereAttrs(nn, old *api.Node) {
	if old.Attributes[api.AttrBIOSUUID] == "" || nn.Attributes[api.AttrBIOSUUID] != old.Attributes[api.AttrBIOSUUID] {
		return
	}
	for k, v := range old.Attributes {
		if strings.HasPrefix(k, "vsphere.") {
			if _, set := nn.Attributes[k]; !set {
				if nn.Attributes == nil {
					nn.Attributes = map[string]string{}
				} else {
					nn.Attributes = maps.Clone(nn.Attributes)
				}
				nn.Attributes[k] = v
			}
		}
	}
}
