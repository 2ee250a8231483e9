package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// Options tune a Collector; zero values take the defaults.
type Options struct {
	// Interval is the performance round (default RealTimeInterval).
	Interval time.Duration
	// History is how many samples are kept per entity (default
	// DefaultHistory), HistoryInterval the least time between two kept
	// samples of one entity (default: every round).
	History         int
	HistoryInterval time.Duration
	// PerfBatch is how many entities one QueryPerf call asks about
	// (default 250).
	PerfBatch int
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts (defaults 1 s and 2 min).
	MinBackoff, MaxBackoff time.Duration
	// Notify is called, from the collector's goroutine, after every
	// inventory update (with the changes it brought, maybe none) and when
	// the vCenter is lost or found again. It must not block for long.
	Notify func(changes []api.VSphereChange)
	Log    *slog.Logger
	Now    func() time.Time
}

// Collector keeps one vCenter's inventory, performance history and
// connection state. Run does the work; every other method reads what it
// found and is safe to call at any time.
type Collector struct {
	conn Connection
	opt  Options

	mu       sync.RWMutex
	inv      *Inventory
	hist     *History
	st       api.VSphereStatus
	failures int
	wasUp    bool
}

// NewCollector returns a collector for conn; call Run.
func NewCollector(conn Connection, opt Options) *Collector {
	if opt.Interval <= 0 {
		opt.Interval = RealTimeInterval
	}
	if opt.PerfBatch <= 0 {
		opt.PerfBatch = 250
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 2 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Notify == nil {
		opt.Notify = func([]api.VSphereChange) {}
	}
	c := &Collector{conn: conn, opt: opt, hist: NewHistory(opt.History, opt.HistoryInterval)}
	c.st.Since = opt.Now()
	c.st.LastError = "not connected yet"
	return c
}

// Connection is the collector's connection (with its secret: do not
// print it).
func (c *Collector) Connection() Connection { return c.conn }

// Backoff is the wait before connection attempt failures+1: doubling from
// min, at most max. It is pure.
func Backoff(failures int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	return minDur(d, max)
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// Run connects, watches and samples until ctx ends. A lost vCenter (or
// an expired session) is retried with backoff; the history is kept.
func (c *Collector) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.failures++
		wait := Backoff(c.failures, c.opt.MinBackoff, c.opt.MaxBackoff)
		now := c.opt.Now()
		var changes []api.VSphereChange
		if c.st.Connected || c.st.LastError == "not connected yet" {
			c.st.Since = now
		}
		if c.st.Connected {
			changes = append(changes, api.VSphereChange{VCenter: c.conn.Name, Kind: "vcenter", Name: c.conn.Name, Type: api.VSphereVCenterDisconnected,
				Message: fmt.Sprintf("vCenter %s is unreachable: %v", c.conn.Name, err), Time: now})
		}
		c.st.Connected = false
		c.st.LastError = err.Error()
		c.st.Retry = now.Add(wait)
		c.mu.Unlock()
		c.opt.Log.Warn("vSphere connection lost; retrying", "vcenter", c.conn.Name, "err", err, "retry_in", wait)
		if changes != nil {
			c.opt.Notify(changes)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// session runs one logged-in session until it fails.
func (c *Collector) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	cl, err := Dial(dctx, c.conn)
	cancel()
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	defer func() {
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cl.Logout(lctx)
		cancel()
	}()
	errs := make(chan error, 2)
	first := make(chan struct{})
	go func() { errs <- c.watch(sctx, cl, first) }()
	go func() {
		select {
		case <-first:
		case <-sctx.Done():
			errs <- nil
			return
		}
		errs <- c.sample(sctx, cl)
	}()
	err = <-errs
	stop()
	if err2 := <-errs; err == nil {
		err = err2
	}
	if err == nil {
		err = errors.New("collection stopped")
	}
	if IsNotAuthenticated(err) {
		err = fmt.Errorf("the vCenter session expired; logging in again: %w", err)
	}
	return err
}

// watch keeps the inventory current: one container view over the whole
// inventory, one property filter on it, and WaitForUpdatesEx returning
// only what changed since the last version.
func (c *Collector) watch(ctx context.Context, cl *govmomi.Client, first chan struct{}) error {
	start := c.opt.Now()
	v, err := view.NewManager(cl.Client).CreateContainerView(ctx, cl.ServiceContent.RootFolder, watchedTypes(), true)
	if err != nil {
		return fmt.Errorf("create the inventory view: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v.Destroy(dctx)
		cancel()
	}()
	pc, err := property.DefaultCollector(cl.Client).Create(ctx)
	if err != nil {
		return fmt.Errorf("create a property collector: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pc.Destroy(dctx)
		cancel()
	}()
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{
			Obj:       v.Reference(),
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ContainerView", Path: "view", Skip: types.NewBool(false)}},
		}},
	}
	for _, t := range watchedTypes() {
		spec.PropSet = append(spec.PropSet, types.PropertySpec{Type: t, PathSet: watched[t]})
	}
	if _, err := pc.CreateFilter(ctx, types.CreateFilter{Spec: spec}); err != nil {
		return fmt.Errorf("create the inventory filter: %w", err)
	}
	raw := NewRaw()
	req := types.WaitForUpdatesEx{This: pc.Reference(), Options: &types.WaitOptions{MaxWaitSeconds: types.NewInt32(15)}}
	for {
		res, err := methods.WaitForUpdatesEx(ctx, cl.Client, &req)
		if err != nil {
			if ctx.Err() != nil {
				cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				pc.CancelWaitForUpdates(cctx)
				cancel()
				return nil
			}
			return fmt.Errorf("wait for inventory updates: %w", err)
		}
		set := res.Returnval
		if set == nil {
			continue // nothing changed within MaxWaitSeconds
		}
		req.Version = set.Version
		for _, fs := range set.FilterSet {
			raw.Apply(fs.ObjectSet)
		}
		if set.Truncated != nil && *set.Truncated {
			continue
		}
		c.publish(raw.Build(), start, first)
		if first != nil {
			close(first)
			first = nil
		}
	}
}

// publish swaps in a new inventory and tells Notify what changed.
func (c *Collector) publish(inv *Inventory, start time.Time, first chan struct{}) {
	now := c.opt.Now()
	c.mu.Lock()
	old := c.inv // after a reconnect: what was known before the outage
	changes := Diff(c.conn.Name, old, inv, now)
	if first != nil {
		c.st.FirstInventory = api.Duration(now.Sub(start))
		if !c.st.Connected {
			if c.wasUp {
				changes = append([]api.VSphereChange{{VCenter: c.conn.Name, Kind: "vcenter", Name: c.conn.Name, Type: api.VSphereVCenterConnected,
					Message: fmt.Sprintf("vCenter %s is reachable again (disconnected since %s)", c.conn.Name, c.st.Since.UTC().Format(time.RFC3339)), Time: now}}, changes...)
			}
			c.st.Since = now
		}
		c.st.Connected, c.st.LastError, c.st.Retry, c.failures, c.wasUp = true, "", time.Time{}, 0, true
	}
	c.inv = inv
	c.st.InventoryTime = now
	ids := make(map[string]bool, len(inv.Hosts)+len(inv.VMs)+len(inv.Datastores))
	for _, h := range inv.Hosts {
		ids[h.ID] = true
	}
	for _, v := range inv.VMs {
		ids[v.ID] = true
	}
	for _, d := range inv.Datastores {
		ids[d.ID] = true
	}
	c.hist.Forget(func(id string) bool { return ids[id] })
	c.mu.Unlock()
	if first != nil {
		c.opt.Log.Info("vSphere inventory read", "vcenter", c.conn.Name, "hosts", len(inv.Hosts), "vms", len(inv.VMs), "datastores", len(inv.Datastores), "took", now.Sub(start))
	}
	c.opt.Notify(changes)
}

// sample runs a performance round every interval.
func (c *Collector) sample(ctx context.Context, cl *govmomi.Client) error {
	pm := performance.NewManager(cl.Client)
	t := time.NewTicker(c.opt.Interval)
	defer t.Stop()
	for {
		if err := c.Round(ctx, pm); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Round reads the newest real-time sample of every connected host and
// powered-on VM, and every datastore's fill, into the history.
func (c *Collector) Round(ctx context.Context, pm *performance.Manager) error {
	start := c.opt.Now()
	inv := c.Inventory()
	if inv == nil {
		return nil
	}
	var hosts, vms []types.ManagedObjectReference
	cpus := map[types.ManagedObjectReference]int{}
	for _, h := range inv.Hosts {
		if r, ok := inv.Ref(h.ID); ok && h.ConnectionState == "connected" {
			hosts = append(hosts, r)
			cpus[r] = h.CPUCores
		}
	}
	for _, v := range inv.VMs {
		if r, ok := inv.Ref(v.ID); ok && v.PowerState == "poweredOn" && !v.Template {
			vms = append(vms, r)
			cpus[r] = v.VCPU
		}
	}
	hv, err := queryLatest(ctx, pm, hosts, hostCounters, c.opt.PerfBatch)
	if err != nil {
		return err
	}
	vv, err := queryLatest(ctx, pm, vms, vmCounters, c.opt.PerfBatch)
	if err != nil {
		return err
	}
	now := c.opt.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[types.ManagedObjectReference]latest{hv, vv} {
		for ref, l := range m {
			t := l.t
			if t.IsZero() {
				t = now
			}
			c.hist.Add(ref.Value, ToSample(t, l.values, cpus[ref], RealTimeInterval))
		}
	}
	for _, d := range inv.Datastores {
		c.hist.Add(d.ID, api.VSphereSample{Time: now, DatastoreUsed: float32(d.UsedPercent)})
	}
	c.st.RoundTime, c.st.RoundDuration = now, api.Duration(now.Sub(start))
	return nil
}

// Inventory is the latest inventory, nil before the first one. Callers
// must not change it.
func (c *Collector) Inventory() *Inventory {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.inv
}

// Status is the connection state and, with full, the whole inventory
// with each entity's latest sample.
func (c *Collector) Status(full bool) api.VSphereStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.st
	st.Connection = c.conn.Public()
	inv := c.inv
	if inv == nil {
		return st
	}
	st.Counts.Datacenters, st.Counts.Clusters, st.Counts.Hosts, st.Counts.VMs, st.Counts.Datastores =
		len(inv.Datacenters), len(inv.Clusters), len(inv.Hosts), len(inv.VMs), len(inv.Datastores)
	if !full {
		return st
	}
	st.Datacenters = append([]api.VSphereDatacenter(nil), inv.Datacenters...)
	st.Clusters = append([]api.VSphereCluster(nil), inv.Clusters...)
	st.Datastores = append([]api.VSphereDatastore(nil), inv.Datastores...)
	st.Hosts = make([]api.VSphereHost, len(inv.Hosts))
	for i, h := range inv.Hosts {
		if s, ok := c.hist.Latest(h.ID); ok {
			h.Latest = &s
		}
		st.Hosts[i] = h
	}
	st.VMs = make([]api.VSphereVM, len(inv.VMs))
	for i, v := range inv.VMs {
		v.Datastores = append([]string(nil), v.Datastores...)
		if s, ok := c.hist.Latest(v.ID); ok {
			v.Latest = &s
		}
		st.VMs[i] = v
	}
	return st
}

// History returns the kept samples of a host, VM or datastore by ID or
// name, and false when the inventory has no such entity.
func (c *Collector) History(key string) (api.VSphereHistory, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.inv == nil {
		return api.VSphereHistory{}, false
	}
	h := api.VSphereHistory{VCenter: c.conn.Name}
	for _, x := range c.inv.Hosts {
		if x.ID == key || x.Name == key {
			h.Kind, h.ID, h.Name = "host", x.ID, x.Name
		}
	}
	for _, x := range c.inv.VMs {
		if h.ID == "" && (x.ID == key || x.Name == key) {
			h.Kind, h.ID, h.Name = "vm", x.ID, x.Name
		}
	}
	for _, x := range c.inv.Datastores {
		if h.ID == "" && (x.ID == key || x.Name == key) {
			h.Kind, h.ID, h.Name = "datastore", x.ID, x.Name
		}
	}
	if h.ID == "" {
		return h, false
	}
	h.Samples = c.hist.Get(h.ID)
	if h.Samples == nil {
		h.Samples = []api.VSphereSample{}
	}
	return h, true
}

// Samples is how many samples the history holds in all: for the memory
// figure in the README.
func (c *Collector) Samples() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, r := range c.hist.rings {
		n += r.n
	}
	return n
}

// Public is the connection as the API shows it: no password, no PEM.
func (c Connection) Public() api.VSphereConnection {
	return api.VSphereConnection{Name: c.Name, URL: c.URL, User: c.User, Insecure: c.Insecure, HasCACert: c.CACert != "",
		DrainOnMaintenance: c.DrainOnMaintenance, CreateTime: c.CreateTime}
}
