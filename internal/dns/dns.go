package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/discovery"
	mdns "github.com/miekg/dns"
)

// Config configures a DNS server.
type Config struct {
	// Addr is where it listens, UDP and TCP, e.g. 127.0.0.1:8600.
	Addr string
	// Domain is the zone's parent, default "gantry." (services live under
	// service.<Domain>).
	Domain string
	// TTL of the answers, in seconds.
	TTL uint32
	// LB, when set, also answers lb.<Domain>: the address of a load
	// balancer for the services it serves.
	LB *LBZone
	// Upstreams, when set, answer every name outside Domain (host:port
	// each, tried in order): the server then stands in for the resolver
	// of whoever asks it. Empty: such names are refused.
	Upstreams []string
	Log       *slog.Logger
}

// LBZone answers <service>.<namespace>.lb.<domain>: A is Address, where
// the load balancer listens, and SRV gives the service's load-balancer
// port there. Port says whether the balancer serves the service, and on
// which port; a service it does not serve does not exist in the zone.
type LBZone struct {
	Address string
	Port    func(namespace, name string) (int, bool)
}

// forwardTimeout bounds one upstream's answer to a forwarded query.
const forwardTimeout = 2 * time.Second

// Source returns the current catalog.
type Source func() *discovery.Catalog

// Server answers queries over UDP and TCP.
type Server struct {
	cfg    Config
	src    Source
	zone   string // service.<domain>
	lbZone string // lb.<domain>
	udp    *mdns.Server
	tcp    *mdns.Server
	rot    atomic.Uint32
}

// Start binds addr over UDP and TCP and answers queries from src until
// ctx ends or Shutdown is called.
func Start(ctx context.Context, cfg Config, src Source) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = "gantry."
	}
	cfg.Domain = mdns.Fqdn(strings.ToLower(cfg.Domain))
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.LB != nil && net.ParseIP(cfg.LB.Address).To4() == nil {
		return nil, fmt.Errorf("DNS: the load balancer's address %q is not an IPv4 address", cfg.LB.Address)
	}
	s := &Server{cfg: cfg, src: src, zone: "service." + cfg.Domain, lbZone: "lb." + cfg.Domain}
	pc, err := net.ListenPacket("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("DNS: listen on udp %s: %w (pick another with --dns-addr)", cfg.Addr, err)
	}
	// TCP on the same port as UDP (which may have been chosen as :0).
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("DNS: listen on tcp %s: %w", pc.LocalAddr(), err)
	}
	h := mdns.HandlerFunc(s.serve)
	s.udp = &mdns.Server{PacketConn: pc, Handler: h}
	s.tcp = &mdns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	for _, srv := range []*mdns.Server{s.udp, s.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				cfg.Log.Error("DNS server stopped", "err", err)
			}
		}()
	}
	go func() {
		<-ctx.Done()
		s.Shutdown()
	}()
	cfg.Log.Info("DNS server ready", "addr", pc.LocalAddr().String(), "zone", s.zone)
	return s, nil
}

// Addr is the address the server answers on (UDP and TCP).
func (s *Server) Addr() string { return s.udp.PacketConn.LocalAddr().String() }

// Shutdown stops both listeners.
func (s *Server) Shutdown() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 || req.Opcode != mdns.OpcodeQuery {
		m.SetRcode(req, mdns.RcodeNotImplemented)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		m.SetRcode(req, mdns.RcodeNotImplemented)
	} else if !mdns.IsSubDomain(s.cfg.Domain, name) && len(s.cfg.Upstreams) > 0 {
		s.forward(w, req)
		return
	} else if !mdns.IsSubDomain(s.cfg.Domain, name) {
		m.SetRcode(req, mdns.RcodeRefused)
		m.Authoritative = false
	} else if err := s.answer(m, q.Qtype, name); err != nil {
		m.SetRcode(req, mdns.RcodeNameError)
		m.Ns = []mdns.RR{s.soa()}
	}
	if len(m.Answer) == 0 && m.Rcode == mdns.RcodeSuccess {
		m.Ns = []mdns.RR{s.soa()}
	}
	size := uint16(mdns.MinMsgSize)
	if o := req.IsEdns0(); o != nil {
		size = max(o.UDPSize(), size)
		m.SetEdns0(size, false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(int(size))
	}
	if err := w.WriteMsg(m); err != nil {
		s.cfg.Log.Debug("DNS answer not sent", "err", err)
	}
}

var errNoName = errors.New("no such name")

// forward asks the upstreams, in order, and passes on the first answer;
// none answering is SERVFAIL.
func (s *Server) forward(w mdns.ResponseWriter, req *mdns.Msg) {
	network := "udp"
	if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp {
		network = "tcp"
	}
	c := &mdns.Client{Net: network, Timeout: forwardTimeout}
	var lastErr error
	for _, up := range s.cfg.Upstreams {
		// Over UDP a truncated answer is passed on as it is: the client
		// asks again over TCP, which is forwarded over TCP.
		r, _, err := c.Exchange(req, up)
		if err != nil {
			lastErr = err
			continue
		}
		r.Id = req.Id
		if err := w.WriteMsg(r); err != nil {
			s.cfg.Log.Debug("DNS answer not sent", "err", err)
		}
		return
	}
	s.cfg.Log.Debug("no upstream resolver answered", "name", req.Question[0].Name, "err", lastErr)
	m := new(mdns.Msg)
	m.SetRcode(req, mdns.RcodeServerFailure)
	w.WriteMsg(m)
}

// answer fills m for a name inside the domain, or says it does not exist.
func (s *Server) answer(m *mdns.Msg, qtype uint16, name string) error {
	if name == s.cfg.Domain || name == s.zone {
		if qtype == mdns.TypeSOA || qtype == mdns.TypeANY {
			m.Answer = append(m.Answer, s.soa())
		}
		return nil
	}
	if s.cfg.LB != nil && mdns.IsSubDomain(s.lbZone, name) {
		return s.answerLB(m, qtype, name)
	}
	if !mdns.IsSubDomain(s.zone, name) {
		return errNoName
	}
	labels := mdns.SplitDomainName(strings.TrimSuffix(name, s.zone))
	var alloc string
	switch {
	case len(labels) == 3 && strings.HasPrefix(labels[0], "_") && labels[1] == "_tcp":
		labels = []string{strings.TrimPrefix(labels[0], "_"), labels[2]}
	case len(labels) == 3:
		alloc, labels = labels[0], labels[1:]
	}
	if len(labels) != 2 {
		return errNoName
	}
	svc, ok := s.src().Lookup(labels[1], labels[0])
	if !ok {
		return errNoName
	}
	eps := svc.Endpoints
	if alloc != "" {
		var one []api.ServiceEndpoint
		for _, e := range eps {
			if strings.HasPrefix(e.AllocID, alloc) {
				one = append(one, e)
			}
		}
		if len(one) == 0 {
			return errNoName
		}
		eps = one[:1]
	}
	// Rotate the order, so clients that take the first answer spread out.
	if n := len(eps); n > 1 {
		k := int(s.rot.Add(1)) % n
		eps = append(append([]api.ServiceEndpoint(nil), eps[k:]...), eps[:k]...)
	}
	base := labels[0] + "." + labels[1] + "." + s.zone
	hdr := func(n string, t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: n, Rrtype: t, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
	}
	a := func(n string, e api.ServiceEndpoint) mdns.RR {
		ip := net.ParseIP(e.Address).To4()
		if ip == nil {
			return nil
		}
		return &mdns.A{Hdr: hdr(n, mdns.TypeA), A: ip}
	}
	switch qtype {
	case mdns.TypeA, mdns.TypeANY:
		seen := map[string]bool{}
		for _, e := range eps {
			if seen[e.Address] {
				continue
			}
			seen[e.Address] = true
			if rr := a(name, e); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	case mdns.TypeSRV:
		for _, e := range eps {
			target := api.ShortID(e.AllocID) + "." + base
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(name, mdns.TypeSRV), Priority: 1, Weight: 1, Port: uint16(e.Port), Target: target})
			if rr := a(target, e); rr != nil {
				m.Extra = append(m.Extra, rr)
			}
		}
	}
	return nil
}

// answerLB fills m for <service>.<namespace>.lb.<domain>: the load
// balancer's address (A) and the service's port there (SRV), or says the
// balancer serves no such service.
func (s *Server) answerLB(m *mdns.Msg, qtype uint16, name string) error {
	if name == s.lbZone {
		return nil
	}
	labels := mdns.SplitDomainName(strings.TrimSuffix(name, s.lbZone))
	if len(labels) != 2 {
		return errNoName
	}
	port, ok := s.cfg.LB.Port(labels[1], labels[0])
	if !ok {
		return errNoName
	}
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.cfg.TTL}
	}
	a := &mdns.A{Hdr: hdr(mdns.TypeA), A: net.ParseIP(s.cfg.LB.Address).To4()}
	switch qtype {
	case mdns.TypeA, mdns.TypeANY:
		m.Answer = append(m.Answer, a)
	case mdns.TypeSRV:
		m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(mdns.TypeSRV), Priority: 1, Weight: 1, Port: uint16(port), Target: name})
		m.Extra = append(m.Extra, a)
	}
	return nil
}

func (s *Server) soa() mdns.RR {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.cfg.TTL},
		Ns:      "ns." + s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  uint32(time.Now().Unix()),
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.cfg.TTL,
	}
}
