package ui

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Summarize says in a few words what an event changed, for the UI's
// recent events and `gantry monitor`.
func Summarize(e api.Event) EventView {
	v := EventView{Index: e.Index, Time: e.Time, Topic: e.Topic, Type: e.Type, Namespace: e.Namespace, Key: e.Key}
	deleted := strings.HasSuffix(e.Type, "Deleted")
	if e.Type == api.EventComponentVersionChanged {
		var c api.ComponentVersionChange
		if json.Unmarshal(e.Payload, &c) == nil {
			v.Name = c.Node
			v.Summary = fmt.Sprintf("%s %s → %s", c.Component, orNone(c.Old), orNone(c.New))
		}
		return v
	}
	switch e.Topic {
	case api.TopicVSphere:
		var c api.VSphereChange
		if json.Unmarshal(e.Payload, &c) == nil {
			v.Summary = c.Message
		}
	case api.TopicJob:
		var j api.Job
		if json.Unmarshal(e.Payload, &j) == nil {
			v.Summary = fmt.Sprintf("version %d", j.Version)
			if j.Stop {
				v.Summary += ", stopped"
			}
		}
	case api.TopicAllocation:
		var a api.Allocation
		if json.Unmarshal(e.Payload, &a) == nil {
			v.Job, v.Name = a.Job, a.Name()
			v.Summary = fmt.Sprintf("%s on %s", a.ClientStatus, a.NodeName)
			if a.Health != "" {
				v.Summary += ", " + a.Health
			}
			if a.DesiredStatus == api.AllocDesiredStop {
				v.Summary += ", to stop"
			}
		}
	case api.TopicNode:
		var n api.Node
		if json.Unmarshal(e.Payload, &n) == nil {
			v.Name = n.Name
			v.Summary = n.Status
			bad := 0
			for _, g := range n.GPUs {
				if g.Unhealthy {
					bad++
				}
			}
			if bad > 0 {
				v.Summary += fmt.Sprintf(", %d GPUs unhealthy", bad)
			}
			if n.Drain != nil {
				v.Summary += ", draining"
			}
		}
	case api.TopicEvaluation:
		var ev api.Evaluation
		if json.Unmarshal(e.Payload, &ev) == nil {
			v.Job = ev.Job
			v.Name = "evaluation " + api.ShortID(ev.ID)
			v.Summary = fmt.Sprintf("%s, triggered by %s, job %s", ev.Status, ev.TriggeredBy, ev.Job)
			if len(ev.FailedGroups) > 0 {
				if n := len(ev.FailedGroups); n == 1 {
					v.Summary += ", 1 group could not be placed"
				} else {
					v.Summary += fmt.Sprintf(", %d groups could not be placed", n)
				}
			}
		}
	default:
		var m map[string]any
		if json.Unmarshal(e.Payload, &m) == nil {
			if st, ok := m["status"].(string); ok {
				v.Summary = st
			}
			if j, ok := m["job"].(string); ok {
				v.Job = j
			}
		}
	}
	if deleted {
		v.Summary = strings.TrimPrefix(v.Summary+"; removed", "; ")
	}
	return v
}

// orNone is a version as an event summary shows it: "none" for a
// component that was not there.
func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
