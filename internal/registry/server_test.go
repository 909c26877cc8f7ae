package registry

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address local (127.0.0.0/8 is all loopback on
// Linux, so each address is a distinct client).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil // refused or reset: the limit closed it before the handshake was seen
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// served sends GET /v2/ on c and reports whether an HTTP 200 came back (false: the connection was closed).
func served(t *testing.T, c net.Conn) bool {
	t.Helper()
	if c == nil {
		return false
	}
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a failure detector only: answers take milliseconds
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("no answer and no close within 30 s")
		}
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestConnectionLimits is issue 6 A14: 20,000 idle connections from one client exhausted the file limit and
// the registry stopped answering. Connections past the per-client bound are closed at once, other clients are
// still served, and the total bound holds too.
func TestConnectionLimits(t *testing.T) {
	reg, err := New(t.TempDir(), WithAnonymousPull(true))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const perClient, total = 4, 10
	srv := NewServer(reg, nil)
	go srv.Serve(LimitListener(ln, perClient, total))
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	// One client opens 20 connections and holds them: only perClient are served.
	var hog []net.Conn
	for range 20 {
		hog = append(hog, dialFrom(t, "127.0.0.2", addr))
	}
	n := 0
	var held net.Conn
	for _, c := range hog {
		if served(t, c) {
			n++
			held = c
		}
	}
	if n != perClient {
		t.Fatalf("one client got %d connections served, want %d", n, perClient)
	}
	// Another client is still served, on several connections.
	for range perClient {
		if !served(t, dialFrom(t, "127.0.0.3", addr)) {
			t.Fatal("a second client was not served while the first held its connections")
		}
	}
	// The total bound: 8 are open and 2 more fit.
	var small []net.Conn
	for range total - 2*perClient {
		c := dialFrom(t, "127.0.0.4", addr)
		if !served(t, c) {
			t.Fatal("a connection under the total bound was refused")
		}
		small = append(small, c)
	}
	// Past it, a new client takes the place of an idle connection of a client holding the most (4), not of
	// the client holding 2: otherwise a few addresses holding idle connections shut everyone else out.
	if !served(t, dialFrom(t, "127.0.0.5", addr)) {
		t.Fatalf("a new client was refused while %d idle connections held the total bound", total)
	}
	for _, c := range small {
		if !served(t, c) {
			t.Fatal("the connection closed for a new client was one of the smallest holder's")
		}
	}
	_ = held
}

// TestBusyConnectionsNotEvicted: at the total bound, only idle connections make room for new clients; when
// every connection is in a request, a new one is closed at once, and one that frees up lets it in.
func TestBusyConnectionsNotEvicted(t *testing.T) {
	reg, err := New(t.TempDir(), WithAnonymousPull(true), WithInsecureLocalPushUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	reg.limits = transferLimits{grace: time.Hour, stall: time.Hour, minRate: 1}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const total = 6
	srv := NewServer(reg, nil)
	lim := LimitListener(ln, total, total).(*limitListener)
	go srv.Serve(lim)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	var busy []net.Conn
	for range total {
		c := dialFrom(t, "127.0.0.2", addr)
		if !served(t, c) {
			t.Fatal("a connection under the bound was refused")
		}
		// An upload whose body has not all arrived: the connection is in a request.
		id, err := reg.store.newUpload(t.Context(), "r")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "PATCH /v2/r/blobs/uploads/"+id+" HTTP/1.1\r\nHost: r\r\nContent-Length: 100\r\n\r\nabc"); err != nil {
			t.Fatal(err)
		}
		busy = append(busy, c)
	}
	// The server marks a connection busy when it reads the first byte; wait (bounded) until all are.
	allBusy := func() bool {
		lim.mu.Lock()
		defer lim.mu.Unlock()
		for c := range lim.clients["127.0.0.2"] {
			if c.idle.Load() {
				return false
			}
		}
		return lim.open == total
	}
	for i := 0; !allBusy(); i++ {
		if i == 500 {
			t.Fatal("the server never read the half requests")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if served(t, dialFrom(t, "127.0.0.3", addr)) {
		t.Fatal("a connection in the middle of a request was closed for a new client")
	}
	busy[0].Close()
	ok := false
	for range 100 {
		if served(t, dialFrom(t, "127.0.0.3", addr)) {
			ok = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !ok {
		t.Fatal("a closed connection's slot was never freed")
	}
}

// trickle is a request body that sends one byte per tick until stopped, recording how much it sent.
type trickle struct {
	tick time.Duration
	max  int
	sent atomic.Int64
}

func (tr *trickle) Read(p []byte) (int, error) {
	if int(tr.sent.Load()) >= tr.max {
		return 0, io.EOF
	}
	time.Sleep(tr.tick)
	p[0] = 'x'
	tr.sent.Add(1)
	return 1, nil
}

// TestTricklingBodyCutOff is issue 6 A14: a body that arrives slower than the minimum rate is cut off after the
// grace period, and nothing of it is stored.
func TestTricklingBodyCutOff(t *testing.T) {
	tr := newTestRegistry(t)
	tr.reg.limits = transferLimits{grace: 300 * time.Millisecond, stall: 300 * time.Millisecond, minRate: 1 << 10}
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	// 1 byte per 20 ms is 50 B/s, far below 1 KiB/s; the whole body would take 10 s.
	body := &trickle{tick: 20 * time.Millisecond, max: 500}
	req, err := http.NewRequest("PATCH", tr.srv.URL+loc, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(body.max)
	resp, err = http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a trickling body was accepted: %s %s", resp.Status, b)
		}
		if !bytes.Contains(b, []byte("cut off")) {
			t.Fatalf("answer to a trickling body does not say it was cut off: %s %s", resp.Status, b)
		}
	}
	if sent := body.sent.Load(); sent >= int64(body.max) {
		t.Fatalf("the whole trickling body (%d bytes) was read", sent)
	}
	// The session is still there with nothing acknowledged.
	resp = tr.do("GET", loc, nil)
	expect(t, resp, http.StatusNoContent, "")
	if resp.Header.Get("Range") != "0-0" {
		t.Fatalf("after the cut-off: Range %q, want 0-0", resp.Header.Get("Range"))
	}
}

// stall is a request body that sends nothing until released.
type stall struct{ release chan struct{} }

func (s *stall) Read(p []byte) (int, error) {
	<-s.release
	return 0, io.ErrUnexpectedEOF
}

// TestStalledUploadsDoNotBlockOthers is issue 6 A15: 100 stalled PATCHes froze most other sessions, because
// upload sessions shared 64 striped locks held while a body was read. Other sessions' uploads must complete.
func TestStalledUploadsDoNotBlockOthers(t *testing.T) {
	dir := t.TempDir()
	reg, err := New(dir, WithInsecureLocalPushUnsafe(), WithAnonymousPull(true))
	if err != nil {
		t.Fatal(err)
	}
	// Stalled bodies are not cut off during this test, so only locking can hold the others up.
	reg.limits = transferLimits{grace: time.Hour, stall: time.Hour, minRate: 1}
	const stalled = 200
	var entered sync.WaitGroup
	entered.Add(stalled)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == "PATCH" && req.Header.Get("X-Stall") != "" {
			entered.Done()
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	tr := &testRegistry{t: t, reg: reg, srv: srv, dir: dir}
	release := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(release); wg.Wait() })
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: stalled}}
	for range stalled {
		resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
		expect(t, resp, http.StatusAccepted, "")
		loc := resp.Header.Get("Location")
		wg.Go(func() {
			req, _ := http.NewRequest("PATCH", srv.URL+loc, &stall{release: release})
			req.ContentLength = 1 << 20
			req.Header.Set("X-Stall", "1")
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	entered.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a failure detector: uploads take ms
	defer cancel()
	for i := range 20 {
		blob := []byte(fmt.Sprintf("blob %d", i))
		resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
		expect(t, resp, http.StatusAccepted, "")
		req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+resp.Header.Get("Location")+"?digest="+sha(blob), bytes.NewReader(blob))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("upload %d while %d others stall: %v", i, stalled, err)
		}
		expect(t, resp, http.StatusCreated, "")
	}
}

// TestUnsentBodyDoesNotHoldConnection: a client that declares a request body and never sends it must get its
// answer (here an anonymous push's 401) and lose the connection within seconds. The HTTP server reads up to
// 256 KiB of an unread body before answering, and it had no deadline: an anonymous client held connections for
// ever that way, and 128 per address from 32 addresses would take every connection the registry allows.
func TestUnsentBodyDoesNotHoldConnection(t *testing.T) {
	reg, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// No body limit can end the wait during the test: only answering without reading may.
	reg.limits = transferLimits{grace: time.Hour, stall: time.Hour, minRate: 1}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(reg, nil)
	go srv.Serve(LimitListener(ln, DefaultMaxConnsPerClient, DefaultMaxConns))
	t.Cleanup(func() { srv.Close() })
	for _, req := range []string{
		"PATCH /v2/r/blobs/uploads/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: r\r\nContent-Length: 1000\r\n\r\n",
		"PUT /v2/r/manifests/v1 HTTP/1.1\r\nHost: r\r\nContent-Length: 100000000\r\n\r\n",
		"POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		c := dialFrom(t, "127.0.0.2", ln.Addr().String())
		if c == nil {
			t.Fatal("connection refused")
		}
		c.SetDeadline(time.Now().Add(20 * time.Second)) // a failure detector: the answer takes milliseconds
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: no answer while the body is unsent: %v", req, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%q: %s, want 401", req, resp.Status)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%q: after the answer the connection stays open (read: %v)", req, err)
		}
	}
}

// TestLongNameNotEchoed: an invalid repository name is quoted shortened in the error, not whole (a 60 KB
// name came back in full).
func TestLongNameNotEchoed(t *testing.T) {
	tr := newTestRegistry(t)
	name := strings.Repeat("a/", 30000) + "x"
	resp := tr.do("GET", "/v2/"+name+"/tags/list", nil)
	if body := expect(t, resp, http.StatusBadRequest, codeNameInvalid); len(body) > 1024 {
		t.Fatalf("the error for a %d-byte name has %d bytes", len(name), len(body))
	}
}
