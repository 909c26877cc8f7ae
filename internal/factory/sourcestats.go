package factory

import "github.com/ssf-dev/ssf/internal/source"

// sourceStats records what the source snapshot holds (files, bytes, and how it differs from its git commit) in the
// build's history; the next checkpoint writes it (recorder.source, right after).
func (r *recorder) sourceStats(st source.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.SourceStats = &st
}
