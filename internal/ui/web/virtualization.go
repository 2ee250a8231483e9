package web

import (
	"net/http"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/ui"
)

// handleUIVirtualization renders the Virtualization page from the
// leader's collectors: another server forwards the request to the leader
// and, when it cannot reach one, shows what it has itself (Gantry's own
// VMs) under a note that it does not lead.
func (u *UI) handleUIVirtualization(w http.ResponseWriter, r *http.Request) error {
	done, ferr := u.cluster.OnLeader(w, r, server.WhatCollectors)
	if done && ferr == nil {
		return nil
	}
	if ferr != nil {
		u.log.Debug("Virtualization page not forwarded to the leader", "err", ferr)
	}
	p := ui.VirtualizationPage{Base: u.base("virtualization", "", "Virtualization", []string{api.TopicVSphere, api.TopicNode}, nil), NotLeader: !u.cluster.IsLeader()}
	for _, c := range u.virt.VCenters() {
		p.VCenters = append(p.VCenters, ui.BuildVCenter(c.Status, c.History))
	}
	p.Gantry = ui.BuildGantry(u.virt.GantryVMs(), u.metrics.NodeHistory)
	return u.renderUI(w, "virtualization", p)
}
