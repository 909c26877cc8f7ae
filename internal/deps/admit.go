package deps

import (
	"context"
	"sync"
)

// Candidate is a dependency about to be fetched (or taken from the cache): what the factory's ssf.deps gate
// decides on. It holds only what the lock file or the pipeline says, since nothing of it has been fetched yet.
type Candidate struct {
	Kind    Kind
	Name    string // module path, npm package name, or a file's Dest
	Version string // "" for a file
	PURL    string // pkg:golang/PATH@VERSION, pkg:npm/NAME@VERSION; "" for a file
	URL     string // where it will be fetched from, without user information
	// Pin is the pin as written where it is pinned: go.sum's "h1:…" (of the module zip when go.sum has one, else
	// of its go.mod), the lock's "sha512-…", a file's "sha256:…".
	Pin string
}

// admissions asks Options.Admit once per candidate, however many files of it are fetched (a module's go.mod and
// zip) and however many fetches ask at once; each waits for the one decision.
type admissions struct {
	mu    sync.Mutex
	calls map[Candidate]*admitCall
}

type admitCall struct {
	done chan struct{}
	err  error
}

// admit returns nil when c may be fetched. Without Options.Admit everything is admitted.
func (f *fetcher) admit(ctx context.Context, c Candidate) error {
	if f.opts.Admit == nil {
		return nil
	}
	c.URL = redactURL(c.URL)
	a := &f.admissions
	a.mu.Lock()
	if a.calls == nil {
		a.calls = map[Candidate]*admitCall{}
	}
	call, ok := a.calls[c]
	if !ok {
		call = &admitCall{done: make(chan struct{})}
		a.calls[c] = call
	}
	a.mu.Unlock()
	if !ok {
		call.err = f.opts.Admit(ctx, c)
		close(call.done)
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
