package registry

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Transfer limits. A fixed read or write timeout would cut off large pushes and pulls on slow links; instead a
// body must keep up a minimum average rate after a grace period, and may not stall for long, so a client that
// trickles bytes or stops sending cannot hold a connection (or an upload session) for ever.
const (
	// DefaultMinTransferRate is the slowest average rate, in bytes per second, a request or response body may
	// move at after transferGrace.
	DefaultMinTransferRate = 64 << 10
	defaultTransferGrace   = 30 * time.Second
	// defaultStallTimeout bounds a pause in a body, however fast it was before.
	defaultStallTimeout = 30 * time.Second
	// writeChunk is how much of a download is sent under one write deadline.
	writeChunk = 4 << 20
)

// Connection limits for NewServer and LimitListener.
const (
	// DefaultMaxConnsPerClient bounds the connections one client address holds open.
	DefaultMaxConnsPerClient = 128
	// DefaultMaxConns bounds all connections, below the file limit, so that the registry keeps answering.
	DefaultMaxConns = 4096
	// idleTimeout closes a kept-alive connection with no request; readHeaderTimeout bounds a request's headers.
	idleTimeout       = 60 * time.Second
	readHeaderTimeout = 10 * time.Second
)

type transferLimits struct {
	grace   time.Duration
	stall   time.Duration
	minRate int64 // bytes per second
}

func defaultTransferLimits() transferLimits {
	return transferLimits{grace: defaultTransferGrace, stall: defaultStallTimeout, minRate: DefaultMinTransferRate}
}

// NewServer returns an http.Server for h with the registry's timeouts: headers within 10 s, idle connections
// closed after 60 s. Bodies are bounded by the Registry itself (a minimum rate rather than a fixed timeout, so
// that large pushes are not cut off), hence no ReadTimeout or WriteTimeout here. Serve it on a listener wrapped
// by LimitListener.
func NewServer(h http.Handler, logger *slog.Logger) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 64 << 10,
		ConnState: trackIdle}
	if logger != nil {
		srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	return srv
}

// bodyReader enforces the transfer limits on a request body through the connection's read deadline: the body
// must arrive at minRate on average after grace, with no pause longer than stall.
type bodyReader struct {
	io.ReadCloser
	rc    *http.ResponseController
	lim   transferLimits
	start time.Time
	n     int64
	now   func() time.Time
	set   time.Time // the deadline last set
	// length is the declared Content-Length (-1 unknown); eof is set once the body has been read to its end.
	length int64
	eof    bool
}

// complete reports whether the whole body has been read.
func (b *bodyReader) complete() bool { return b.eof || (b.length >= 0 && b.n >= b.length) }

func (b *bodyReader) deadline() time.Time {
	rate := b.start.Add(b.lim.grace + time.Duration(float64(b.n)/float64(b.lim.minRate)*float64(time.Second)))
	stall := b.now().Add(b.lim.stall)
	if stall.Before(rate) {
		return stall
	}
	return rate
}

func (b *bodyReader) Read(p []byte) (int, error) {
	// Errors (a connection that has no deadlines, such as in some tests) leave the body unbounded by time.
	// The deadline moves only when it must come earlier or has moved on by a tenth of a second: setting it on
	// every read would cost a timer update per 32 KiB of a large push.
	if d := b.deadline(); b.set.IsZero() || d.Before(b.set) || d.Sub(b.set) > 100*time.Millisecond {
		b.rc.SetReadDeadline(d)
		b.set = d
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
		// The body is complete: the handler's own work (hashing, fsync) may take longer than the deadline, and
		// the server's background read must not see the deadline pass and cancel the request.
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// extendWrite gives the next n bytes of a response their time: grace plus n at the minimum rate.
func (s *statusWriter) extendWrite(n int) {
	if s.rc == nil {
		return
	}
	s.rc.SetWriteDeadline(time.Now().Add(s.lim.grace + time.Duration(float64(n)/float64(s.lim.minRate)*float64(time.Second))))
}

// LimitListener wraps ln so that at most perClient connections from one client address (an IP, or an IPv6
// /64) and total connections overall are open at once. Past the per-client bound a new connection is closed as
// soon as it is accepted. At the total bound, a new connection takes the place of an idle one (no request in
// progress) of the client holding the most connections, and is closed only when none is idle: otherwise 33
// addresses holding 128 idle keep-alive connections each shut every other client out. Idleness is known only
// when the server is made by NewServer.
func LimitListener(ln net.Listener, perClient, total int) net.Listener {
	return &limitListener{Listener: ln, perClient: perClient, total: total, clients: map[string]map[*limitConn]struct{}{}}
}

type limitListener struct {
	net.Listener
	perClient, total int

	mu      sync.Mutex
	open    int
	clients map[string]map[*limitConn]struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := connKey(c.RemoteAddr())
		l.mu.Lock()
		var evict *limitConn
		if l.open >= l.total && len(l.clients[key]) < l.perClient {
			evict = l.idleVictim()
		}
		if len(l.clients[key]) >= l.perClient || (l.open >= l.total && evict == nil) {
			l.mu.Unlock()
			// A reset rather than a FIN: the client learns at once, and no socket lingers in TIME_WAIT here.
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		if evict != nil {
			l.removeLocked(evict)
		}
		lc := &limitConn{Conn: c, l: l, key: key}
		l.addLocked(lc)
		l.mu.Unlock()
		if evict != nil {
			// Idle keep-alive connections may be closed at any time; clients open another.
			evict.Conn.Close()
		}
		return lc, nil
	}
}

// idleVictim returns an idle connection of the client holding the most connections, or nil.
func (l *limitListener) idleVictim() *limitConn {
	var victim *limitConn
	most := 0
	for _, conns := range l.clients {
		if len(conns) <= most {
			continue
		}
		for c := range conns {
			if c.idle.Load() {
				victim, most = c, len(conns)
				break
			}
		}
	}
	return victim
}

func (l *limitListener) addLocked(c *limitConn) {
	if l.clients[c.key] == nil {
		l.clients[c.key] = map[*limitConn]struct{}{}
	}
	l.clients[c.key][c] = struct{}{}
	l.open++
	c.released = false
}

// removeLocked forgets c, once.
func (l *limitListener) removeLocked(c *limitConn) {
	if c.released {
		return
	}
	c.released = true
	l.open--
	delete(l.clients[c.key], c)
	if len(l.clients[c.key]) == 0 {
		delete(l.clients, c.key)
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	key  string
	idle atomic.Bool // between requests, as the server reports through trackIdle
	// released is guarded by l.mu.
	released bool
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.removeLocked(c)
	c.l.mu.Unlock()
	return err
}

// trackIdle is NewServer's ConnState hook: it marks a LimitListener connection idle while it waits for a
// request (after one, or before the first), so that the listener may close it for a new client at the total
// bound.
func trackIdle(c net.Conn, st http.ConnState) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitConn); ok {
		lc.idle.Store(st == http.StateIdle || st == http.StateNew)
	}
}

func connKey(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ta.IP.To4() == nil {
			return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
		}
		return ta.IP.String()
	}
	return a.String()
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
