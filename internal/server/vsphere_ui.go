package server

import (
	"net/http"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/ui"
)

// handleUIVirtualization renders the Virtualization page from the
// leader's collectors.
func (s *Server) handleUIVirtualization(w http.ResponseWriter, r *http.Request) error {
	p := ui.VirtualizationPage{Base: s.base("virtualization", "", "Virtualization", []string{api.TopicVSphere, api.TopicNode}, nil), NotLeader: !s.IsLeader()}
	for _, c := range s.vsphereCollectors() {
		p.VCenters = append(p.VCenters, ui.BuildVCenter(s.vsphereStatus(c, true), func(id string) []api.VSphereSample {
			h, _ := c.History(id)
			return h.Samples
		}))
	}
	return s.renderUI(w, "virtualization", p)
}
