package dns

import (
	"context"
	"net"
	"sort"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/discovery"
	mdns "github.com/miekg/dns"
)

func testCatalog() *discovery.Catalog {
	return discovery.FromWire(&api.ServiceCatalog{Services: []*api.ServiceInfo{
		{Name: "web", Namespace: "default", Endpoints: []api.ServiceEndpoint{
			{AllocID: "aaaaaaaa-1111", Address: "10.0.0.1", Port: 20001},
			{AllocID: "bbbbbbbb-2222", Address: "10.0.0.2", Port: 20002},
			{AllocID: "cccccccc-3333", Address: "10.0.0.1", Port: 20003},
		}},
		{Name: "idle", Namespace: "prod", Endpoints: []api.ServiceEndpoint{}},
	}})
}

func start(t *testing.T) *Server { t.Helper(); return startWith(t, Config{}) }

// startWith starts a server on a free loopback port with cfg.
func startWith(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Port 0 picks a free UDP port; the same TCP port may be taken by
	// another process of a busy machine, so a clash is tried again.
	var err error
	for range 5 {
		var s *Server
		if s, err = Start(ctx, cfg, testCatalog); err == nil {
			return s
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatal(err)
	return nil
}

func query(t *testing.T, s *Server, net, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: net}
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return r
}

func TestAnswers(t *testing.T) {
	s := start(t)
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, s, network, "web.default.service.gantry.", mdns.TypeA)
		var ips []string
		for _, rr := range r.Answer {
			ips = append(ips, rr.(*mdns.A).A.String())
		}
		sort.Strings(ips)
		if r.Rcode != mdns.RcodeSuccess || !r.Authoritative || len(ips) != 2 || ips[0] != "10.0.0.1" || ips[1] != "10.0.0.2" {
			t.Fatalf("%s A: rcode %d answers %v", network, r.Rcode, ips)
		}
	}

	for _, name := range []string{"web.default.service.gantry.", "_web._tcp.default.service.gantry."} {
		r := query(t, s, "udp", name, mdns.TypeSRV)
		ports := map[uint16]string{}
		for _, rr := range r.Answer {
			srv := rr.(*mdns.SRV)
			ports[srv.Port] = srv.Target
		}
		if len(ports) != 3 || ports[20001] != "aaaaaaaa.web.default.service.gantry." {
			t.Fatalf("%s SRV: %v", name, r.Answer)
		}
		if len(r.Extra) != 3 {
			t.Fatalf("SRV targets' addresses missing from the additional section: %v", r.Extra)
		}
		// Every target resolves to its replica's node.
		tr := query(t, s, "udp", ports[20002], mdns.TypeA)
		if len(tr.Answer) != 1 || tr.Answer[0].(*mdns.A).A.String() != "10.0.0.2" {
			t.Fatalf("target %s: %v", ports[20002], tr.Answer)
		}
	}

	if r := query(t, s, "udp", "nope.default.service.gantry.", mdns.TypeA); r.Rcode != mdns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("unknown service: rcode %d ns %v", r.Rcode, r.Ns)
	}
	if r := query(t, s, "udp", "web.other.service.gantry.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("service in another namespace: rcode %d", r.Rcode)
	}
	if r := query(t, s, "udp", "idle.prod.service.gantry.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("service without healthy replicas: rcode %d answers %v", r.Rcode, r.Answer)
	}
	if r := query(t, s, "udp", "WEB.Default.Service.Gantry.", mdns.TypeA); len(r.Answer) != 2 {
		t.Fatalf("names are case-insensitive: %v", r.Answer)
	}
	if r := query(t, s, "udp", "example.com.", mdns.TypeA); r.Rcode != mdns.RcodeRefused {
		t.Fatalf("outside the zone: rcode %d, want REFUSED", r.Rcode)
	}
	if r := query(t, s, "udp", "web.default.service.gantry.", mdns.TypeAAAA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("AAAA: rcode %d answers %v", r.Rcode, r.Answer)
	}
}

// TestLBZoneAndUpstreams: an agent's resolver for its containers answers
// the services its load balancer serves with the balancer's address and
// port, and passes every name outside the domain to the upstream
// resolvers (a real DNS server here), over UDP and TCP; none answering
// is SERVFAIL.
func TestLBZoneAndUpstreams(t *testing.T) {
	up := startUpstream(t)
	served := map[string]int{"default/web": 8080}
	lb := &LBZone{Address: "172.17.0.1", Port: func(ns, name string) (int, bool) {
		p, ok := served[ns+"/"+name]
		return p, ok
	}}
	s := startWith(t, Config{LB: lb, Upstreams: []string{up}})

	for _, network := range []string{"udp", "tcp"} {
		r := query(t, s, network, "web.default.lb.gantry.", mdns.TypeA)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "172.17.0.1" {
			t.Fatalf("%s lb A: rcode %d answers %v", network, r.Rcode, r.Answer)
		}
		r = query(t, s, network, "example.com.", mdns.TypeA)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "192.0.2.7" {
			t.Fatalf("%s forwarded A: rcode %d answers %v", network, r.Rcode, r.Answer)
		}
	}
	r := query(t, s, "udp", "web.default.lb.gantry.", mdns.TypeSRV)
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.SRV).Port != 8080 || len(r.Extra) != 1 {
		t.Fatalf("lb SRV: %v extra %v", r.Answer, r.Extra)
	}
	for _, name := range []string{"api.default.lb.gantry.", "web.other.lb.gantry.", "x.web.default.lb.gantry."} {
		if r := query(t, s, "udp", name, mdns.TypeA); r.Rcode != mdns.RcodeNameError {
			t.Errorf("%s: rcode %d, want NXDOMAIN (the balancer serves no such service)", name, r.Rcode)
		}
	}
	// The service zone still answers as on a server.
	if r := query(t, s, "udp", "web.default.service.gantry.", mdns.TypeA); len(r.Answer) != 2 {
		t.Fatalf("service zone beside the lb zone: %v", r.Answer)
	}
	if r := query(t, s, "udp", "gone.example.com.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("the upstream's NXDOMAIN is passed on: rcode %d", r.Rcode)
	}

	// Upstreams that do not answer: SERVFAIL, not a hang.
	dead := startWith(t, Config{Upstreams: []string{"127.0.0.1:1"}})
	if r := query(t, dead, "udp", "example.com.", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("no upstream answering: rcode %d, want SERVFAIL", r.Rcode)
	}
	if _, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", LB: &LBZone{Address: "not-an-ip", Port: lb.Port}}, testCatalog); err == nil {
		t.Fatal("a load balancer address that is not an IP was accepted")
	}
}

// startUpstream runs a DNS server (miekg/dns, UDP and TCP on one port)
// that knows example.com and nothing else.
func startUpstream(t *testing.T) string {
	t.Helper()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		if q := req.Question[0]; q.Name == "example.com." && q.Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.7")})
		} else {
			m.SetRcode(req, mdns.RcodeNameError)
		}
		w.WriteMsg(m)
	})
	for range 5 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue // the TCP port is taken: try another
		}
		for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
			go srv.ActivateAndServe()
			t.Cleanup(func() { srv.Shutdown() })
		}
		return pc.LocalAddr().String()
	}
	t.Fatal("no free port pair for the upstream DNS server")
	return ""
}
