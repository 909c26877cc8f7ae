package registry

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// writeUsers writes a users file holding name with a hash of pass at cost.
func writeUsers(t *testing.T, name, pass string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), cost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(name+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// login sends GET /v2/ with basic auth from addr straight to the handler and returns the response.
func login(reg *Registry, addr, name, pass string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/v2/", nil)
	req.RemoteAddr = addr
	req.SetBasicAuth(name, pass)
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, req)
	return rec
}

// TestDummyHashCost is issue 6 A10: the hash checked for an unknown user has the users' own cost, so a wrong
// name takes as long as a wrong password (the cost is what sets bcrypt's time; timing itself is not asserted).
func TestDummyHashCost(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost + 2, BcryptCost} {
		u, err := loadUsers(writeUsers(t, "ci", "correct horse battery", cost))
		if err != nil {
			t.Fatal(err)
		}
		got, err := bcrypt.Cost(dummyHash(u.dummyCost()))
		if err != nil || got != cost {
			t.Fatalf("users at cost %d: the unknown-user hash has cost %d (%v)", cost, got, err)
		}
	}
	u, err := loadUsers(filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := bcrypt.Cost(dummyHash(u.dummyCost())); got != BcryptCost {
		t.Fatalf("no users: the unknown-user hash has cost %d, want %d", got, BcryptCost)
	}
}

// TestDummyHashReadyBeforeLogins: the unknown-user hash is made when the users are loaded, not by the first
// unknown name's check, which then took twice as long as a wrong password's and so revealed the name unknown.
func TestDummyHashReadyBeforeLogins(t *testing.T) {
	const cost = bcrypt.MinCost + 4 // a cost no other test makes a dummy hash for
	if _, err := New(t.TempDir(), WithUsersFile(writeUsers(t, "ci", "correct horse battery", cost))); err != nil {
		t.Fatal(err)
	}
	if _, ok := dummyHashes.Load(cost); !ok {
		t.Fatal("no unknown-user hash is ready after the users were loaded: the first unknown name pays for making it")
	}
}

// TestLoginThrottle is issue 6 A10: after maxAuthFailures failed logins a client address is answered 429 with
// Retry-After and no password check, while other clients and already verified credentials are unaffected; and
// when every check slot is busy a login is answered 429 instead of queueing more bcrypt work.
func TestLoginThrottle(t *testing.T) {
	users := writeUsers(t, "ci", "correct horse battery", bcrypt.MinCost)
	reg, err := New(t.TempDir(), WithUsersFile(users))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	reg.auth.now = func() time.Time { return now }
	const attacker, other = "127.0.0.2:4000", "127.0.0.3:4000"
	// A verified login is cached, so it keeps working during a lockout of its address.
	if rec := login(reg, attacker, "ci", "correct horse battery"); rec.Code != http.StatusOK {
		t.Fatalf("good login: %d", rec.Code)
	}
	for i := range maxAuthFailures {
		name := "ci"
		if i%2 == 1 {
			name = "nobody"
		}
		if rec := login(reg, attacker, name, fmt.Sprint("guess", i)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, rec.Code)
		}
	}
	rec := login(reg, attacker, "ci", "guess again")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("failure %d: status %d, want 429", maxAuthFailures+1, rec.Code)
	}
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	if rec := login(reg, attacker, "ci", "correct horse battery"); rec.Code != http.StatusOK {
		t.Fatalf("cached good login during lockout: %d", rec.Code)
	}
	if rec := login(reg, other, "ci", "wrong"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("another client: %d, want 401", rec.Code)
	}
	// The lockout doubles with each failure after it ends, and ends.
	now = now.Add(authBackoff + time.Millisecond)
	if rec := login(reg, attacker, "ci", "guess"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("after the backoff: %d, want 401", rec.Code)
	}
	now = now.Add(authBackoff + time.Millisecond)
	if rec := login(reg, attacker, "ci", "guess"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second backoff not doubled: %d, want 429", rec.Code)
	}

	// Concurrent checks in flight count against the client's allowance.
	for range maxAuthFailures {
		if wait := reg.auth.begin("192.0.2.7"); wait != 0 {
			t.Fatalf("check refused before the allowance: wait %v", wait)
		}
	}
	if wait := reg.auth.begin("192.0.2.7"); wait == 0 {
		t.Fatalf("check %d in flight from one client was allowed", maxAuthFailures+1)
	}

	// Every slot busy: a new login waits at most slotWait, then gets 429, not a bcrypt.
	reg.auth.slotWait = time.Millisecond
	for range cap(reg.auth.slots) {
		reg.auth.slots <- struct{}{}
	}
	if rec := login(reg, "127.0.0.4:1", "ci", "wrong"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("login with every check slot busy: %d, want 429", rec.Code)
	}
}
