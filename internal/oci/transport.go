package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultTimeout is how long a registry client waits without progress (no response headers, no byte of a body
// sent or received) before it gives up.
const DefaultTimeout = 30 * time.Second

// ErrNoProgress is wrapped when a registry stopped answering: nothing arrived or left for the timeout.
var ErrNoProgress = errors.New("registry made no progress")

// WithTimeout sets how long a request may go without progress before it fails with ErrNoProgress (default
// DefaultTimeout). The overall deadline is the context's.
func WithTimeout(d time.Duration) RegistryOption {
	return func(c *registryConfig) { c.timeout = d }
}

// progressTransport fails a request that makes no progress for idle: a registry that accepts a connection and
// never answers, or trickles a byte now and then more slowly than that, cannot hold a client indefinitely.
// Progress is any byte of the request body read by the transport, the response headers, or any byte of the
// response body.
type progressTransport struct {
	next http.RoundTripper
	idle time.Duration
}

func (t progressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{cancel: cancel, idle: t.idle,
		err: fmt.Errorf("%w: nothing from %s %s for %s (raise --timeout for a slow registry)", ErrNoProgress, req.Method, req.URL.Redacted(), t.idle)}
	w.timer = time.AfterFunc(t.idle, w.fire)
	req = req.Clone(ctx)
	if req.Body != nil {
		req.Body = &progressBody{rc: req.Body, w: w, ctx: ctx}
	}
	if get := req.GetBody; get != nil {
		// A retried request's body counts as progress too.
		req.GetBody = func() (io.ReadCloser, error) {
			rc, err := get()
			if err != nil {
				return nil, err
			}
			return &progressBody{rc: rc, w: w, ctx: ctx}, nil
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		w.stop()
		if cause := context.Cause(ctx); errors.Is(cause, ErrNoProgress) {
			err = cause
		}
		cancel(nil)
		return nil, err
	}
	w.kick()
	resp.Body = &progressBody{rc: resp.Body, w: w, ctx: ctx, done: func() { w.stop(); cancel(nil) }}
	return resp, nil
}

// watchdog cancels a request when its timer runs out; every sign of progress resets the timer.
type watchdog struct {
	mu      sync.Mutex
	timer   *time.Timer
	idle    time.Duration
	cancel  context.CancelCauseFunc
	err     error
	stopped bool
}

func (w *watchdog) fire() { w.cancel(w.err) }

func (w *watchdog) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.timer.Reset(w.idle)
	}
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}

// progressBody reports each byte read through it as progress and turns a cancellation by the watchdog into its
// error.
type progressBody struct {
	rc   io.ReadCloser
	w    *watchdog
	ctx  context.Context
	done func()
	once sync.Once
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.kick()
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, ErrNoProgress) {
			err = cause
		}
	}
	return n, err
}

func (b *progressBody) Close() error {
	err := b.rc.Close()
	if b.done != nil {
		b.once.Do(b.done)
	}
	return err
}
