package dns

import (
	"context"
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

func start(t *testing.T) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Port 0 picks a free UDP port; the same TCP port may be taken by
	// another process of a busy machine, so a clash is tried again.
	var err error
	for range 5 {
		var s *Server
		if s, err = Start(ctx, Config{Addr: "127.0.0.1:0"}, testCatalog); err == nil {
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
