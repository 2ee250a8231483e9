package policy

// SetMarkEvery makes IncrementalLearners take a mark every n jobs until
// the returned function restores the default.
func SetMarkEvery(n int) (restore func()) {
	old := markEvery
	markEvery = n
	return func() { markEvery = old }
}

// FullSteps is how many jobs the learner folded in full (computing the
// typical set) rather than skipped.
func (l *IncrementalLearner) FullSteps() int { return l.st.full }
