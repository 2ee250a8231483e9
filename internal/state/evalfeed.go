package state

import (
	"sort"

	"github.com/gantryhq/gantry/internal/api"
)

// The evaluation feed lets the leader's broker follow the evaluations
// without listing and sorting all of them on every pick: the view keeps
// a bounded log of which evaluations changed at which revision.

// maxEvalLog bounds the feed; a reader that fell further behind reads
// every evaluation again.
const maxEvalLog = 1 << 14

type evalChange struct {
	rev int64
	id  string
}

// logEvalLocked records that evaluation id changed at rev.
func (s *Store) logEvalLocked(rev int64, id string) {
	s.evalLog = append(s.evalLog, evalChange{rev, id})
	if len(s.evalLog) > maxEvalLog {
		drop := len(s.evalLog) / 2
		s.evalLogFrom = s.evalLog[drop-1].rev
		s.evalLog = append([]evalChange(nil), s.evalLog[drop:]...)
	}
}

// EvalChanges returns what changed among the evaluations after revision
// since: the evaluations the view now holds that changed (once each, in
// no order) and the IDs of those it no longer holds; upTo is the revision
// the answer reflects, the since of the next call. When the feed does not
// reach back to since (the first call, with since < 0; a reader too far
// behind; the view was loaded anew) whole is true and changed lists every
// evaluation: the reader starts over from it.
func (s *Store) EvalChanges(since int64) (changed []*api.Evaluation, gone []string, upTo int64, whole bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if since < s.evalLogFrom {
		changed = make([]*api.Evaluation, 0, len(s.evals))
		for _, e := range s.evals {
			changed = append(changed, e)
		}
		return changed, nil, s.rev, true
	}
	i := sort.Search(len(s.evalLog), func(i int) bool { return s.evalLog[i].rev > since })
	seen := map[string]bool{}
	for _, c := range s.evalLog[i:] {
		if seen[c.id] {
			continue
		}
		seen[c.id] = true
		if e, ok := s.evals[c.id]; ok {
			changed = append(changed, e)
		} else {
			gone = append(gone, c.id)
		}
	}
	return changed, gone, s.rev, false
}
