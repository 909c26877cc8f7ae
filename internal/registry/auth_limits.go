package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Each password check costs bcrypt's ~0.3 s of CPU, and anyone who can connect may ask for one. These bounds
// keep guessing from taking the host's CPU or trying many passwords: at most one check per CPU at a time, and
// a client address that keeps failing is told to come back later (429 with Retry-After) without a check.
const (
	// maxAuthFailures is how many failed (or in-flight) password checks a client address gets before it must
	// wait; each further failure doubles the wait, from authBackoff up to maxAuthBackoff.
	maxAuthFailures = 5
	authBackoff     = time.Second
	maxAuthBackoff  = 15 * time.Minute
	// authForget is how long after its last failure a client address starts afresh.
	authForget = 15 * time.Minute
	// maxAuthClients bounds the table of client addresses; past it, entries are evicted (expired ones first).
	maxAuthClients = 10000
	// authSlotWait is how long a check waits for a free CPU slot before answering 429.
	authSlotWait = 10 * time.Second
)

const codeTooManyRequests = "TOOMANYREQUESTS"

type authLimiter struct {
	slots    chan struct{} // one token per password check running
	slotWait time.Duration

	mu      sync.Mutex
	clients map[string]*authClient
	now     func() time.Time
}

type authClient struct {
	failures int
	inflight int
	last     time.Time // of the last failure
}

func newAuthLimiter(now func() time.Time) *authLimiter {
	return &authLimiter{slots: make(chan struct{}, runtime.NumCPU()), slotWait: authSlotWait,
		clients: map[string]*authClient{}, now: now}
}

// clientKey is the address failures are counted against: the IP, or its /64 for IPv6, where one host
// usually holds a whole /64.
func clientKey(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// begin registers a password check by client, or returns how long the client must wait first.
func (l *authLimiter) begin(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.clients[client]
	if c != nil && c.inflight == 0 && now.Sub(c.last) > authForget {
		c.failures = 0
	}
	if c == nil {
		if len(l.clients) >= maxAuthClients {
			l.evict(now)
		}
		c = &authClient{}
		l.clients[client] = c
	}
	switch {
	case c.failures >= maxAuthFailures:
		// Locked out until the backoff since the last failure passes; then one check at a time.
		wait := maxAuthBackoff
		if shift := c.failures - maxAuthFailures; shift < 20 {
			wait = min(authBackoff<<shift, maxAuthBackoff)
		}
		if left := c.last.Add(wait).Sub(now); left > 0 {
			return left
		}
		if c.inflight > 0 {
			return authBackoff
		}
	case c.failures+c.inflight >= maxAuthFailures:
		// As many checks in flight as failures left: a burst of guesses gets no more tries than a sequence.
		return authBackoff
	}
	c.inflight++
	return 0
}

// abort forgets a check that did not run.
func (l *authLimiter) abort(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[client]; c != nil {
		c.inflight--
	}
}

// end records a check's outcome: a success forgets the client's failures.
func (l *authLimiter) end(client string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[client]
	if c == nil {
		return
	}
	c.inflight--
	if ok {
		if c.inflight == 0 {
			delete(l.clients, client)
		} else {
			c.failures = 0
		}
		return
	}
	c.failures++
	c.last = l.now()
}

// evict makes room in the table: expired entries go first, else any entry without a check in flight.
func (l *authLimiter) evict(now time.Time) {
	for k, c := range l.clients {
		if c.inflight == 0 && now.Sub(c.last) > authForget {
			delete(l.clients, k)
		}
	}
	for k, c := range l.clients {
		if len(l.clients) < maxAuthClients {
			return
		}
		if c.inflight == 0 {
			delete(l.clients, k)
		}
	}
}

// slot waits for a free password-check slot; ok is false when none freed up in time.
func (l *authLimiter) slot(ctx context.Context) (release func(), ok bool) {
	t := time.NewTimer(l.slotWait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// tooManyRequests answers 429 with a Retry-After in whole seconds.
func tooManyRequests(w http.ResponseWriter, wait time.Duration, msg string) {
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, codeTooManyRequests, fmt.Sprintf("%s: retry in %d s", msg, secs))
}
