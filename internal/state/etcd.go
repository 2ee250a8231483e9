package state

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EmbedConfig configures the embedded etcd member. Its addresses are
// always explicit so that it never clashes with a local etcd on the default
// ports.
type EmbedConfig struct {
	Name    string // member name, unique in the cluster
	DataDir string // etcd keeps its files in DataDir/etcd
	// ClientURL and PeerURL are the URLs other members and clients use;
	// the member listens on them too unless ListenClientURL and
	// ListenPeerURL say otherwise (etcd listens on IPs only, so a member
	// advertising a host name listens on e.g. http://0.0.0.0:7702).
	ClientURL       string
	PeerURL         string
	ListenClientURL string
	ListenPeerURL   string
	// QuotaBytes is the backend quota; 0 means 2 GiB.
	QuotaBytes int64
	// CompactionRetention is how many revisions the store keeps for the
	// event stream to resume from; 0 means 100,000.
	CompactionRetention int64
	// InitialCluster lists every member as name=peerURL,…; empty means a
	// single-member cluster.
	InitialCluster string
	// Join makes the member join an existing cluster (it must have been
	// added with AddMember first); a member restarting with its data dir
	// rejoins on its own.
	Join bool
}

// Embedded is a running embedded etcd member.
type Embedded struct {
	etcd      *embed.Etcd
	ClientURL string
}

func parseURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("etcd %s url %q: want scheme://host:port", what, s)
	}
	return u, nil
}

// StartEmbedded starts an etcd member and waits until it serves.
func StartEmbedded(cfg EmbedConfig) (*Embedded, error) {
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	if ec.Name == "" {
		ec.Name = "gantry"
	}
	ec.Dir = filepath.Join(cfg.DataDir, "etcd")
	urls := map[string]*url.URL{}
	for what, v := range map[string]string{
		"client": cfg.ClientURL, "peer": cfg.PeerURL,
		"listen client": or(cfg.ListenClientURL, cfg.ClientURL), "listen peer": or(cfg.ListenPeerURL, cfg.PeerURL),
	} {
		u, err := parseURL(what, v)
		if err != nil {
			return nil, err
		}
		urls[what] = u
	}
	ec.ListenClientUrls = []url.URL{*urls["listen client"]}
	ec.AdvertiseClientUrls = []url.URL{*urls["client"]}
	ec.ListenPeerUrls = []url.URL{*urls["listen peer"]}
	ec.AdvertisePeerUrls = []url.URL{*urls["peer"]}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.Name + "=" + urls["peer"].String()
	}
	ec.InitialClusterToken = "gantry"
	if cfg.Join {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	ec.QuotaBackendBytes = cfg.QuotaBytes
	if ec.QuotaBackendBytes == 0 {
		ec.QuotaBackendBytes = 2 << 30
	}
	ret := cfg.CompactionRetention
	if ret == 0 {
		ret = 100000
	}
	ec.AutoCompactionMode = "revision"
	ec.AutoCompactionRetention = fmt.Sprint(ret)
	// etcd keeps its raft log in memory from the last snapshot back to
	// SnapshotCatchUpEntries before it (5,000 by default) and snapshots
	// every SnapshotCount entries (10,000). Its defaults assume small
	// entries; a plan of 1,000 allocations is one entry of about 1 MB, so
	// the defaults held 420 MB of log at 300,000 allocations. A follower
	// further behind than the catch-up window gets a snapshot instead,
	// which etcd sends on its own.
	ec.SnapshotCount = 2000
	ec.SnapshotCatchUpEntries = 1000
	ec.ExperimentalSnapshotCatchUpEntries = 1000
	ec.MaxTxnOps = EmbeddedMaxTxnOps
	ec.MaxRequestBytes = EmbeddedMaxRequestBytes
	ec.LogLevel = "error"
	// etcd formats a slow request as text before its logger (off here)
	// drops it; a plan of hundreds of allocations is "slow" by its 100 ms
	// default, so the formatting alone cost ~2% of a busy server.
	ec.WarningApplyDuration = time.Hour
	ec.WarningUnaryRequestDuration = time.Hour
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s (client %s, peer %s): %w", ec.Dir, urls["client"], urls["peer"], err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(120 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready within 120s: check that its ports are free, its data dir is writable and, in a cluster, that a majority of the members listed in --initial-cluster run")
	}
	return &Embedded{etcd: e, ClientURL: urls["client"].String()}, nil
}

// The embedded etcd's transaction limits. The plan applier cuts a plan
// into transactions only between gangs and preemption sets, so one
// transaction must hold the largest of those: 16,384 operations is a gang
// of more than 16,000 replicas, and 8 MiB holds about 6,000 allocations
// (the bytes bound first). The client's send limit (Dial) is raised to
// match.
const (
	EmbeddedMaxTxnOps       = 16384
	EmbeddedMaxRequestBytes = 8 << 20
)

// maxCallSendBytes is the client's limit on one request: above the
// embedded etcd's so that the server, not the client, is the bound.
const maxCallSendBytes = EmbeddedMaxRequestBytes + 1<<20

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// AddMember adds a new member (by its peer URL) to the cluster that
// endpoints reach, and returns the initial-cluster string the new member
// must start with.
func AddMember(ctx context.Context, endpoints []string, name, peerURL string) (string, error) {
	cli, err := Dial(ctx, endpoints)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("list etcd members: %w", err)
	}
	var parts []string
	known := false
	for _, m := range list.Members {
		for _, u := range m.PeerURLs {
			if u == peerURL {
				known = true
			}
		}
		if m.Name != "" && m.Name != name {
			parts = append(parts, m.Name+"="+strings.Join(m.PeerURLs, ","))
		}
	}
	if !known {
		if _, err := cli.MemberAdd(ctx, []string{peerURL}); err != nil {
			return "", fmt.Errorf("add etcd member %s (%s): %w", name, peerURL, err)
		}
	}
	parts = append(parts, name+"="+peerURL)
	return strings.Join(parts, ","), nil
}

// Close stops the member.
func (e *Embedded) Close() { e.etcd.Close() }

// Dial connects to etcd endpoints and checks that they answer.
func Dial(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          endpoints,
		DialTimeout:        5 * time.Second,
		MaxCallSendMsgSize: maxCallSendBytes,
		Logger:             zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(cctx, "health-probe"); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %v does not answer: %w", endpoints, err)
	}
	return cli, nil
}
