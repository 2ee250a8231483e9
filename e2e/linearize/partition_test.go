package linearize

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// netLab is a bridge on the host with one network namespace per server,
// each reached at its own address: the host (the test's clients) reaches
// every namespace, and iptables rules inside one namespace cut it off
// from the others' addresses while the clients still reach it.
type netLab struct {
	t      *testing.T
	bridge string
	ns     []string
	addrs  []string // 10.x.y.1N of namespace N
	host   string   // the bridge's own address
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// requireNetLab says why namespaces cannot be made here, or nothing.
func requireNetLab(t *testing.T) {
	t.Helper()
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "it must run as root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			why = append(why, tool+" is missing (Debian: iproute2, iptables)")
		}
	}
	if len(why) == 0 {
		return
	}
	msg := "network namespaces for the partition: " + strings.Join(why, "; ")
	if os.Getenv("GANTRY_REQUIRE_NETNS") != "" {
		t.Fatal(msg + " (GANTRY_REQUIRE_NETNS is set)")
	}
	t.Skip(msg)
}

func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	id := os.Getpid() % 10000
	subnet := fmt.Sprintf("10.%d.%d", 200+id%50, id%250)
	l := &netLab{t: t, bridge: fmt.Sprintf("glin%d", id), host: subnet + ".1"}
	t.Cleanup(l.remove)
	// What crosses the bridge goes through the host's FORWARD chain
	// (Docker turns bridge netfilter on and sets its policy to DROP): one
	// rule, removed with the bridge, lets it pass.
	steps := [][]string{
		{"ip", "link", "add", l.bridge, "type", "bridge"},
		{"ip", "addr", "add", l.host + "/24", "dev", l.bridge},
		{"ip", "link", "set", l.bridge, "up"},
		{"iptables", "-I", "FORWARD", "1", "-i", l.bridge, "-o", l.bridge, "-j", "ACCEPT"},
	}
	for i := range n {
		ns := fmt.Sprintf("glin%d-s%d", id, i+1)
		veth := fmt.Sprintf("glin%dv%d", id, i+1)
		addr := fmt.Sprintf("%s.%d", subnet, 11+i)
		l.ns, l.addrs = append(l.ns, ns), append(l.addrs, addr)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "link", "set", veth, "master", l.bridge, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", addr + "/24", "dev", "eth0"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"})
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Fatalf("set up the network namespaces: %v", err)
		}
	}
	return l
}

func (l *netLab) remove() {
	for _, ns := range l.ns {
		run("ip", "netns", "del", ns)
	}
	run("iptables", "-D", "FORWARD", "-i", l.bridge, "-o", l.bridge, "-j", "ACCEPT")
	run("ip", "link", "del", l.bridge)
}

// partition drops, inside namespace i, everything from and to the other
// namespaces' addresses (the host keeps reaching it); heal removes that.
func (l *netLab) partition(i int, cut bool) error {
	op := "-A"
	if !cut {
		op = "-D"
	}
	for j, other := range l.addrs {
		if j == i {
			continue
		}
		for _, rule := range [][]string{{"INPUT", "-s", other}, {"OUTPUT", "-d", other}} {
			args := append([]string{"ip", "netns", "exec", l.ns[i], "iptables", op}, append(rule, "-j", "DROP")...)
			if err := run(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// partitions are when (from the clients' start) the leader is cut off
// from its peers and for how long; the clients run for partitionOps.
var partitions = []struct{ at, for_ time.Duration }{{3 * time.Second, 18 * time.Second}, {26 * time.Second, 8 * time.Second}}

const partitionOps = 38 * time.Second

// TestLinearizableUnderPartition runs the clients of the leader-kill test
// against three servers, each in its own network namespace, while the
// leader is cut off from the two other members (not from the clients)
// for longer than an election, then healed; twice. A cut-off leader must
// neither acknowledge a write nor answer a consistent read it could not
// know to be current. The history is checked with porcupine, and every
// acknowledged job must be found afterwards.
func TestLinearizableUnderPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers in network namespaces (not in -short)")
	}
	requireNetLab(t)
	lab := newNetLab(t, 3)
	dir := t.TempDir()
	var servers []*proc
	var members []string
	for i, a := range lab.addrs {
		members = append(members, fmt.Sprintf("s%d=http://%s:7703", i+1, a))
	}
	for i, a := range lab.addrs {
		s := &proc{name: fmt.Sprintf("server s%d", i+1), api: serverAPI("http://" + a + ":7701"), args: []string{"netns", "exec", lab.ns[i], gantryBin,
			"server", "--insecure", "--data-dir", filepath.Join(dir, fmt.Sprintf("s%d", i+1)), "--http-addr", a + ":7701",
			"--etcd-name", fmt.Sprintf("s%d", i+1),
			"--etcd-client-url", "http://" + a + ":7702", "--etcd-peer-url", "http://" + a + ":7703",
			"--initial-cluster", strings.Join(members, ","), "--heartbeat-ttl", heartbeatTTL.String(), "--log-level", "warn"}}
		s.bin = "ip"
		servers = append(servers, s)
	}
	t.Cleanup(func() {
		for _, s := range servers {
			s.stop()
		}
	})
	for _, s := range servers {
		s.start(t)
	}
	eventually(t, 90*time.Second, "a leader among the three servers", func() bool { return leader(servers) != nil }, servers...)

	rec := &recorder{start: time.Now(), acked: map[string]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), partitionOps)
	defer cancel()
	failures := runClients(ctx, rec, servers)

	// The nemesis: cut the leader off from its peers, heal, twice; the
	// first cut outlasts the leader's election lease, so another server
	// takes over while the old leader still answers clients.
	var cuts []string
	for _, cut := range partitions {
		at := cut.at
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(rec.start.Add(at))):
		}
		var l *proc
		eventually(t, 60*time.Second, "a leader to cut off", func() bool { l = leader(servers); return l != nil }, servers...)
		i := indexOf(servers, l)
		if err := lab.partition(i, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(cut.for_)
		after := "no other leader"
		for _, other := range servers {
			if st, err := status(other); other != l && err == nil && st.Leader {
				after = other.name + " leading"
			}
		}
		if err := lab.partition(i, false); err != nil {
			t.Fatal(err)
		}
		cuts = append(cuts, fmt.Sprintf("%s for %s (%s at the end)", l.name, cut.for_, after))
	}
	if err := failures(); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		eventually(t, 90*time.Second, s.name+" to answer after the partitions", func() bool { _, err := status(s); return err == nil }, s)
	}
	eventually(t, 90*time.Second, "a leader after the partitions", func() bool { return leader(servers) != nil }, servers...)
	final := finalReads(t, rec, servers)
	for job := range rec.acked {
		for srv, out := range final[job] {
			if !out.Found {
				t.Errorf("job %s was acknowledged but %s does not find it after the partitions: lost", job, srv)
			}
		}
	}
	counts := map[string]int{}
	for _, op := range rec.ops {
		counts[op.Input.(input).Op]++
	}
	t.Logf("cut off %s from their peers; %d operations recorded (%d register, %d stop, %d read), %d without an answer; %d jobs acknowledged",
		strings.Join(cuts, ", then "), len(rec.ops), counts["register"], counts["stop"], counts["read"], rec.unk, len(rec.acked))
	checkHistory(t, rec)
}

func indexOf(servers []*proc, p *proc) int {
	for i, s := range servers {
		if s == p {
			return i
		}
	}
	return -1
}

// runClients starts the concurrent clients until ctx ends; the function
// it returns waits for them and gives the first request refused as
// invalid, if any.
func runClients(ctx context.Context, rec *recorder, servers []*proc) func() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 19))
			target := c % len(servers)
			for seq := 0; ctx.Err() == nil; seq++ {
				in := input{Job: fmt.Sprintf("lin-%d", rng.IntN(jobs))}
				switch r := rng.IntN(10); {
				case r < 4:
					in.Op, in.Value = "register", fmt.Sprintf("c%d-%d", c, seq)
				case r < 5:
					in.Op = "stop"
				default:
					in.Op = "read"
				}
				call := rec.now()
				out, err := do(servers[target].api, in)
				switch {
				case errors.Is(err, errDropped):
					target = (target + 1) % len(servers)
				case err != nil:
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				case in.Op == "read" && out.Unknown:
					target = (target + 1) % len(servers) // that server could not answer: try the next
				default:
					if out.Unknown {
						target = (target + 1) % len(servers)
					}
					rec.add(c, in, call, out)
				}
				time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
			}
		}()
	}
	return func() error {
		wg.Wait()
		if len(failures) > 0 {
			return fmt.Errorf("%d requests were refused as invalid, the first: %s", len(failures), failures[0])
		}
		return nil
	}
}

// finalReads reads every job through every server once the faults have
// healed; the reads join the history.
func finalReads(t *testing.T, rec *recorder, servers []*proc) map[string]map[string]output {
	t.Helper()
	final := map[string]map[string]output{}
	for j := range jobs {
		job := fmt.Sprintf("lin-%d", j)
		final[job] = map[string]output{}
		for _, s := range servers {
			in := input{Job: job, Op: "read"}
			eventually(t, 60*time.Second, "a consistent read of "+job+" through "+s.name, func() bool {
				call := rec.now()
				out, err := do(s.api, in)
				if err != nil || out.Unknown {
					return false
				}
				rec.add(clients, in, call, out)
				final[job][s.name] = out
				return true
			}, s)
		}
	}
	return final
}

// checkHistory fails the test unless the history is linearizable, and
// draws it when it is not.
func checkHistory(t *testing.T, rec *recorder) {
	t.Helper()
	counts := map[string]int{}
	for _, op := range rec.ops {
		counts[op.Input.(input).Op]++
	}
	if counts["register"] == 0 || counts["read"] == 0 || counts["stop"] == 0 {
		t.Fatalf("the history lacks an operation kind: %v", counts)
	}
	res, info := porcupine.CheckOperationsVerbose(model, rec.ops, 60*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("gantry-linearize-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(model, info, path); err == nil {
			t.Logf("the history, drawn: %s", path)
		}
		t.Fatal("the history is not linearizable")
	default:
		t.Fatalf("the linearizability check did not finish (%s)", res)
	}
}
