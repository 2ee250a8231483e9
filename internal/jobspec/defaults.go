package jobspec

import (
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Health check defaults.
const (
	DefaultCheckInterval = api.Duration(10 * time.Second)
	DefaultCheckTimeout  = api.Duration(2 * time.Second)
	DefaultCheckFailures = 3
)

// Canonicalize fills in the defaults a job's fields take when they are
// unset, in place. It is idempotent, and it changes only fields whose zero
// value is not legal, so it never reinterprets a value the user chose:
//
//   - namespace "default", type "service";
//   - a group without a restart policy gets api.DefaultRestartPolicy(type);
//   - a service group without an update block gets
//     api.DefaultUpdateStrategy() (one replica at a time, healthy for 10s,
//     within 5m, progress every 10m, no auto_revert): every change of a
//     service rolls under a deployment, and `job inspect` shows how;
//     one with a policy gets the default's interval and mode when those are
//     unset (attempts 0 and delay 0s are legal choices and stay);
//   - a disconnect block without replace gets replace: true (a group
//     without the block keeps none: api.DisconnectFor resolves its
//     defaults, which depend on the node's heartbeat TTL);
//   - a health check gets interval 10s, timeout 2s (or its interval, if
//     shorter) and failures 3 when those are unset; grace stays 0;
//   - empty lists and maps become nil, so that a job reads the same after a
//     JSON round trip.
//
// Priority and count are legal at 0, so a decoded struct cannot say whether
// they were left out: Parse, which sees the text, defaults them (priority
// 50, count 1). A server that decodes JSON bodies itself takes 0 literally;
// Parse reads JSON too and gives the same defaults and located errors.
//
// A port's "to" left at 0 stays 0: the scheduler maps it to the host port.
// Canonicalize does not validate; nil groups and tasks are left for
// Validate to report.
func Canonicalize(job *api.Job) {
	if job == nil {
		return
	}
	if job.Namespace == "" {
		job.Namespace = api.DefaultNamespace
	}
	if job.Type == "" {
		job.Type = api.JobService
	}
	if len(job.Groups) == 0 {
		job.Groups = nil
	}
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		def := api.DefaultRestartPolicy(job.Type)
		if g.Restart == nil {
			g.Restart = &def
		} else {
			if g.Restart.Interval == 0 {
				g.Restart.Interval = def.Interval
			}
			if g.Restart.Mode == "" {
				g.Restart.Mode = def.Mode
			}
		}
		if d := g.Disconnect; d != nil && d.Replace == nil {
			replace := true
			d.Replace = &replace
		}
		if g.Update == nil && job.Type == api.JobService {
			u := api.DefaultUpdateStrategy()
			g.Update = &u
		}
		g.Constraints = nilIfEmpty(g.Constraints)
		g.Affinities = nilIfEmpty(g.Affinities)
		g.Spread = nilIfEmpty(g.Spread)
		for i := range g.Spread {
			if len(g.Spread[i].Targets) == 0 {
				g.Spread[i].Targets = nil
			}
		}
		g.Services = nilIfEmpty(g.Services)
		if len(g.Tasks) == 0 {
			g.Tasks = nil
		}
		for _, t := range g.Tasks {
			if t != nil {
				canonicalizeTask(t)
			}
		}
	}
}

func canonicalizeTask(t *api.Task) {
	c := &t.Config
	c.Args = nilIfEmpty(c.Args)
	c.Entrypoint = nilIfEmpty(c.Entrypoint)
	c.Ports = nilIfEmpty(c.Ports)
	c.Volumes = nilIfEmpty(c.Volumes)
	c.Devices = nilIfEmpty(c.Devices)
	c.ExtraHosts = nilIfEmpty(c.ExtraHosts)
	c.DockerVolumes = nilIfEmpty(c.DockerVolumes)
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	t.Checks = nilIfEmpty(t.Checks)
	for i := range t.Checks {
		ch := &t.Checks[i]
		if ch.Interval == 0 {
			ch.Interval = DefaultCheckInterval
		}
		if ch.Timeout == 0 {
			ch.Timeout = min(DefaultCheckTimeout, ch.Interval)
			if ch.Timeout <= 0 { // a negative interval is Validate's to report
				ch.Timeout = DefaultCheckTimeout
			}
		}
		if ch.Failures == 0 {
			ch.Failures = DefaultCheckFailures
		}
		ch.Command = nilIfEmpty(ch.Command)
	}
	if s := t.Security; s != nil {
		s.CapAdd = nilIfEmpty(s.CapAdd)
		s.CapDrop = nilIfEmpty(s.CapDrop)
	}
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
