package server

import (
	"net/http"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/ui"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// handleUIVirtualization renders the Virtualization page from the
// leader's collectors: another server forwards the request to the leader
// and, when it cannot reach one, shows what it has itself (Gantry's own
// VMs) under a note that it does not lead.
func (s *Server) handleUIVirtualization(w http.ResponseWriter, r *http.Request) error {
	done, ferr := s.onLeader(w, r, whatCollectors)
	if done && ferr == nil {
		return nil
	}
	if ferr != nil {
		s.log.Debug("Virtualization page not forwarded to the leader", "err", ferr)
	}
	p := ui.VirtualizationPage{Base: s.base("virtualization", "", "Virtualization", []string{api.TopicVSphere, api.TopicNode}, nil), NotLeader: !s.IsLeader()}
	for _, c := range s.vsphereCollectors() {
		p.VCenters = append(p.VCenters, ui.BuildVCenter(s.vsphereStatus(c, true), func(id string) []api.VSphereSample {
			h, _ := c.History(id)
			return h.Samples
		}))
	}
	p.Gantry = ui.BuildGantry(s.gantryVMs(), s.history.Get)
	return s.renderUI(w, "virtualization", p)
}

// leaderGantryVMs is gantryVMs on the leader and nothing elsewhere: like
// the vCenter series, the Gantry VMs' series come from one server, so
// that a sum over servers counts each VM once.
func (s *Server) leaderGantryVMs() []vsphere.GantryVM {
	if !s.IsLeader() {
		return nil
	}
	return s.gantryVMs()
}

// gantryVMs lists Gantry's own VMs (qemu tasks of live allocations) as
// the Virtualization page and the gantry_vsphere_vm_* series show them,
// from the store's view and the node history this server holds.
func (s *Server) gantryVMs() []vsphere.GantryVM {
	return vsphere.GantryVMs(vsphere.GantryState{
		Allocs: s.store.Allocs(state.AllocFilter{}),
		Job:    s.store.Job,
		NodeName: func(id string) string {
			if n, ok := s.store.Node(id); ok {
				return n.Name
			}
			return ""
		},
		Latest: func(node string) (api.NodeSample, bool) {
			h := s.history.Get(node)
			if len(h) == 0 {
				return api.NodeSample{}, false
			}
			return h[len(h)-1], true
		},
	})
}
