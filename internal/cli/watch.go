package cli

import (
	"context"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// pollEvery is how often a follower reads again when the event stream is
// unavailable.
const pollEvery = 250 * time.Millisecond

// jobWatch wakes the follower of one job (job run, revert, promote)
// whenever the event stream brings a change of the job's evaluations,
// allocations or deployments, instead of reading every 250 ms. The
// stream resumes after the last index it saw when a server goes away or
// the connection drops, from the next server given in --address when one
// is gone (apiclient.FollowEvents).
//
// The poll fallback: when the stream is unavailable (a server without
// /v1/events, a token that may not read it, the server's index cannot be
// read to start from), wait returns every 250 ms, as job run did before
// it followed the stream. Only then.
type jobWatch struct {
	wake    chan struct{} // one pending wake-up stands for any number of events
	polling chan struct{} // closed when the stream is unavailable
	cancel  context.CancelFunc
	done    chan struct{}
}

// watchJob follows the events of job name in ns after index (0: the
// answering server's current index, read now, before the caller's first
// read, so that no change falls between them).
func watchJob(c *client, ns, name string, index int64) *jobWatch {
	w := &jobWatch{wake: make(chan struct{}, 1), polling: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	if index == 0 && c.err == nil {
		if st, err := read(c, c.Status); err == nil {
			index = st.Index
		}
	}
	if index == 0 || c.err != nil {
		close(w.polling)
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		err := c.FollowEvents(ctx, apiclient.Events{
			Topics:    []string{api.TopicEvaluation, api.TopicAllocation, api.TopicDeployment},
			Keys:      []string{name},
			Namespace: ns,
			After:     index,
		}, func(api.Event) error {
			select {
			case w.wake <- struct{}{}:
			default:
			}
			return nil
		})
		if err != nil {
			close(w.polling)
		}
	}()
	return w
}

// wait returns after the next change of the job (or, polling, after
// 250 ms), or at deadline.
func (w *jobWatch) wait(deadline time.Time) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-w.wake:
	case <-timer.C:
	case <-w.polling:
		select {
		case <-time.After(pollEvery):
		case <-timer.C:
		}
	}
}

// stop ends the stream.
func (w *jobWatch) stop() {
	w.cancel()
	<-w.done
}
