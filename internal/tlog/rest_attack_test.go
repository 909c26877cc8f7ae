package tlog

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowPostsDoNotStarveOthers: clients that send a POST's headers and then trickle its body (slowloris) hold
// receiving slots only; another client's append goes through at once. A body used to be received in one of the 64
// verifying slots, so 64 such connections stopped every other append and search until they timed out (30 s in ssf
// log serve, for ever without a timeout), again and again.
func TestSlowPostsDoNotStarveOthers(t *testing.T) {
	l := openLog(t, t.TempDir(), newKey(t))
	api, err := NewServer(context.Background(), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	var entered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	const slow = 100 // more than the 64 verifying slots, fewer than the receiving ones
	for range slow {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /api/v1/log/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
	}
	for entered.Load() < slow { // every slow request is in the handler, in a slot, waiting for its body
		time.Sleep(time.Millisecond)
	}
	client := &http.Client{Timeout: 10 * time.Second} // bounds a failure; a pass answers at once
	resp, err := client.Post(srv.URL+"/api/v1/log/entries", "application/json", strings.NewReader(hashedRekordProposal(t, newKey(t), "probe", nil)))
	if err != nil {
		t.Fatalf("an append beside %d slow POSTs: %v", slow, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("an append beside %d slow POSTs: %d", slow, resp.StatusCode)
	}
}
