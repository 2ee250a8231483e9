package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

var checkClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// runCheck runs one health check every interval after its grace period,
// reporting healthy on success and unhealthy after `failures` consecutive
// failures (checkTracker), as events for the runner's loop, until ctx
// ends: when the task exits or is told to stop. The grace period and the
// waits between probes are the runner's clock's; only a probe's own
// timeout is the wall clock's (a deadline on its I/O).
func (tr *taskRunner) runCheck(ctx context.Context, i int, c api.Check, h *driver.Handle) {
	interval, timeout, failures := c.Interval.D(), c.Timeout.D(), c.Failures
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if timeout <= 0 || timeout > interval {
		timeout = min(2*time.Second, interval)
	}
	if failures <= 0 {
		failures = 3
	}
	if g := c.Grace.D(); g > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tr.clock.after(g):
		}
	}
	tracker := checkTracker{failures: failures, interval: interval}
	lastErr := ""
	next := tracker.first()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tr.clock.after(next):
		}
		if ctx.Err() != nil {
			return // both were ready: the stop wins
		}
		began := tr.clock.now()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := tr.port.probe(cctx, c, h)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var verdict string
		verdict, next = tracker.observe(err == nil)
		next = sinceStart(next, tr.clock.now().Sub(began))
		switch {
		case err == nil:
			lastErr = ""
		case verdict == api.HealthUnhealthy && err.Error() != lastErr:
			lastErr = err.Error()
			tr.log.Warn("health check failing", "check", c.Type, "err", err)
		}
		if verdict != "" {
			tr.send(ctx, taskMsg{ev: tasklife.Event{Kind: tasklife.CheckVerdict, Check: i, Verdict: verdict}})
		}
	}
}

// sinceStart is the wait after a probe that took took, so that probes
// start every interval however long each took (as Kubernetes' probe
// period does): a probe that waits out its timeout while the task boots
// does not push the next one a whole interval further.
func sinceStart(interval, took time.Duration) time.Duration {
	return max(interval-took, 0)
}

// checkTracker turns one check's probe results into its verdict and says
// when to probe next: the check is healthy on a success, unhealthy only
// after `failures` consecutive counted failures, and counted probes are
// spaced by the check's interval (start to start, see sinceStart) whatever
// they answered.
//
// Until the first success the task is starting, and the tracker probes
// more often than that: after startupStep, then half as long again each
// time until firstCounted has passed (a task that boots in tens of
// milliseconds is seen healthy at most half its boot time late), then
// twice as long each time, up to the interval. These extra probes can only find the task healthy
// sooner; a failure among them counts only when an interval has passed
// since the last counted one (the first counts firstCounted after the
// start), so a task that boots slowly is found unhealthy exactly when it
// would be with probes only at those times. Once the check has seen a success it probes once per
// interval, as a task that was healthy and fails is judged.
type checkTracker struct {
	failures int
	interval time.Duration
	failed   int
	up       bool          // a probe has succeeded
	step     time.Duration // the next wait while starting
	owed     time.Duration // while starting: how long until a failure counts again
	since    time.Duration // while starting: how long since the first wait began
}

// startupStep is the first wait of a check, and of its probes while the
// task is starting; it doubles up to the interval. firstCounted is when
// (after the grace period) the first failure counts.
const (
	startupStep  = 10 * time.Millisecond
	firstCounted = 200 * time.Millisecond
)

// first is the delay before the first probe (after the grace period).
func (c *checkTracker) first() time.Duration {
	c.step = min(c.interval, startupStep)
	c.owed = min(c.interval, firstCounted) - c.step
	c.since = c.step
	return c.step
}

// observe records one probe and returns the check's verdict ("" while
// failures are still below the threshold) and the delay before the next.
func (c *checkTracker) observe(ok bool) (verdict string, next time.Duration) {
	if ok {
		c.failed, c.up = 0, true
		return api.HealthHealthy, c.interval
	}
	if !c.up {
		return c.observeStarting()
	}
	return c.countFailure(), c.interval
}

func (c *checkTracker) observeStarting() (verdict string, next time.Duration) {
	if c.owed <= 0 {
		verdict = c.countFailure()
		c.owed = c.interval
	}
	grow := 2 * c.step
	if c.since < firstCounted {
		grow = c.step * 3 / 2
	}
	c.step = min(max(grow, startupStep), c.interval)
	next = min(c.step, c.owed)
	c.owed -= next
	c.since += next
	return verdict, next
}

func (c *checkTracker) countFailure() string {
	c.failed++
	if c.failed >= c.failures {
		return api.HealthUnhealthy
	}
	return ""
}

func (p *allocTaskPort) probe(ctx context.Context, c api.Check, h *driver.Handle) error {
	switch c.Type {
	case api.CheckHTTP, api.CheckTCP:
		addr, err := p.checkAddr(c.Port)
		if err != nil {
			return err
		}
		if c.Type == api.CheckTCP {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return conn.Close()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+c.Path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "gantry-health-check")
		resp, err := checkClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s answered %s", c.Path, resp.Status)
		}
		return nil
	case api.CheckExec:
		ex, ok := p.drv.(driver.Execer)
		if !ok {
			return fmt.Errorf("driver %s cannot run exec checks", p.drv.Name())
		}
		var out bytes.Buffer
		code, err := ex.Exec(ctx, h, &driver.ExecRequest{Cmd: c.Command, Stdout: &out, Stderr: &out})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("%v exited %d: %s", c.Command, code, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	}
	return fmt.Errorf("unknown check type %q", c.Type)
}
