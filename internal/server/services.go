package server

import (
	"net/http"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/discovery"
	"github.com/gantryhq/gantry/internal/state"
)

// catalogCache keeps the service catalog of the latest store index, so
// that DNS queries and load balancers' blocking queries share one build.
type catalogCache struct {
	mu sync.Mutex
	c  *discovery.Catalog
}

// Catalog returns the service catalog as of the store's current index:
// every published service with its healthy endpoints.
func (s *Server) Catalog() *discovery.Catalog {
	idx := s.store.Index()
	s.catalog.mu.Lock()
	defer s.catalog.mu.Unlock()
	if c := s.catalog.c; c != nil && c.Index == idx {
		return c
	}
	nodes := map[string]*api.Node{}
	for _, n := range s.store.Nodes() {
		nodes[n.ID] = n
	}
	c := discovery.Build(idx, s.store.Jobs(""), s.store.Allocs(state.AllocFilter{}), nodes)
	s.catalog.c = c
	return c
}

// networkRoutes registers the services and deployments API.
func (s *Server) networkRoutes(handle func(string, func(http.ResponseWriter, *http.Request) error)) {
	handle("GET /v1/services", s.handleServiceList)
	handle("GET /v1/services/{name}", s.handleServiceRead)
	handle("GET /v1/service-catalog", s.handleServiceCatalog)

	handle("GET /v1/deployments", s.handleDeploymentList)
	handle("GET /v1/deployments/{id}", s.handleDeploymentRead)
	handle("GET /v1/jobs/{name}/deployment", s.handleJobDeployment)
	handle("GET /v1/jobs/{name}/deployments", s.handleJobDeployments)
	handle("POST /v1/jobs/{name}/promote", s.handleJobPromote)
	handle("POST /v1/jobs/{name}/revert", s.handleJobRevert)
}

// handleServiceList lists services with their healthy endpoints, in one
// namespace (?namespace=) or all.
func (s *Server) handleServiceList(w http.ResponseWriter, r *http.Request) error {
	ns := r.URL.Query().Get("namespace")
	if ns != "" && !api.ValidName(ns) {
		return badRequest("namespace %q %s", ns, api.NameRule)
	}
	out := []*api.ServiceInfo{}
	for _, svc := range s.Catalog().Services {
		if (ns == "" || svc.Namespace == ns) && s.visible(r, svc.Namespace) {
			out = append(out, svc)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleServiceRead(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceParam(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	svc, ok := s.Catalog().Lookup(ns, name)
	if !ok {
		return notFound("service %q not found in namespace %q: no job publishes it", name, ns)
	}
	writeJSON(w, http.StatusOK, svc)
	return nil
}

// handleServiceCatalog answers the whole catalog. With ?hash=H it blocks
// until the catalog's hash differs from H, or ?wait= (default 30s)
// passed: load balancers follow the catalog this way.
func (s *Server) handleServiceCatalog(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	wait := 30 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return badRequest("wait %q must be a duration up to 5m", v)
		}
		wait = d
	}
	hash := q.Get("hash")
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := s.store.Changed()
		c := s.Catalog()
		if hash == "" || c.Hash != hash {
			writeJSON(w, http.StatusOK, c.Wire())
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			writeJSON(w, http.StatusOK, c.Wire())
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}
