package factory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/tlog"
	"github.com/ssf-dev/ssf/internal/trust"
)

// dsseEntry is a dsse entry over payload signed by a fresh key (its public key as the verifier).
func dsseEntry(t *testing.T, payload string) tlog.Entry {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const pt = "application/vnd.in-toto+json"
	h := sha256.Sum256([]byte(fmt.Sprintf("DSSEv1 %d %s %d %s", len(pt), pt, len(payload), payload)))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	env, _ := json.Marshal(map[string]any{"payload": base64.StdEncoding.EncodeToString([]byte(payload)), "payloadType": pt,
		"signatures": []map[string]string{{"sig": base64.StdEncoding.EncodeToString(sig)}}})
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	e, err := tlog.NewDSSEEntry(env, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestNodeLogTakesTurns: the node API's log takes the turn local identity builds take: while one holds it, an
// append waits (here 200 ms), then is refused as busy with nothing appended; once the turn is free it appends,
// and closing gives the turn back. A replayed entry is refused as a duplicate.
func TestNodeLogTakesTurns(t *testing.T) {
	lh := newLogHome(t)
	h, cfg, l := lh.h, lh.cfg, lh.l
	nl := &nodeLog{h: h, td: cfg.TrustDomain, turnWait: 200 * time.Millisecond, open: lh.open}
	ctx := context.Background()

	build, err := takeTurn(ctx, l.LogTurn(), nil) // a local identity build holds the log
	if err != nil {
		t.Fatal(err)
	}
	e := dsseEntry(t, `{"n":1}`)
	if _, err := nl.append(ctx, e); !errors.Is(err, trust.ErrLogBusy) {
		t.Fatalf("append while a build holds the turn: %v, want ErrLogBusy", err)
	}
	build.Close()

	le, err := nl.append(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if le.LogIndex != 0 {
		t.Fatalf("first entry at index %d", le.LogIndex)
	}
	if _, err := nl.append(ctx, e); !errors.Is(err, trust.ErrLogDuplicate) {
		t.Fatalf("replayed entry: %v, want ErrLogDuplicate", err)
	}
	if le, err := nl.append(ctx, dsseEntry(t, `{"n":2}`)); err != nil || le.LogIndex != 1 {
		t.Fatalf("second entry: %v at %v", err, le)
	}
	if err := nl.close(); err != nil {
		t.Fatal(err)
	}
	// The turn is free again: a build takes it at once.
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	build, err = takeTurn(wctx, l.LogTurn(), nil)
	if err != nil {
		t.Fatalf("the node API kept the log's turn after close: %v", err)
	}
	build.Close()
}

// TestNodeLogYieldsToWaitingBuild: a joined node that keeps appending (here a replayed request, answered 409,
// after each the server would keep the turn for nodeLogIdle) does not keep the log's turn from a local identity
// build for ever: once the server has held it for maxHold and a build waits, the next append gives the turn up,
// the build gets it, and that append waits for it (here until busy) instead of taking the turn again first.
func TestNodeLogYieldsToWaitingBuild(t *testing.T) {
	lh := newLogHome(t)
	h, cfg, l := lh.h, lh.cfg, lh.l
	nl := &nodeLog{h: h, td: cfg.TrustDomain, turnWait: 200 * time.Millisecond, maxHold: time.Nanosecond,
		open: lh.open}
	defer nl.close()
	ctx := context.Background()
	e := dsseEntry(t, `{"n":1}`)
	if _, err := nl.append(ctx, e); err != nil {
		t.Fatal(err)
	}
	// A local build comes and waits for the turn the server holds.
	type taken struct {
		f   *os.File
		err error
	}
	got := make(chan taken, 1)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		f, err := takeTurn(bctx, l.LogTurn(), nil)
		got <- taken{f, err}
	}()
	for !buildWaiting(l.LogTurn()) { // until the build shows it waits
		select {
		case r := <-got:
			t.Fatalf("the build got the turn the server holds: %v", r.err)
		case <-time.After(time.Millisecond):
		}
	}
	// The node replays its request: the server gives the turn to the build, then waits for it (busy).
	if _, err := nl.append(ctx, e); !errors.Is(err, trust.ErrLogBusy) {
		t.Fatalf("append while the build it yielded to holds the turn: %v, want ErrLogBusy", err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.f.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the local build is still waiting: the node API kept the log's turn")
	}
	// The build is done: the node appends again.
	if le, err := nl.append(ctx, dsseEntry(t, `{"n":2}`)); err != nil || le.LogIndex != 1 {
		t.Fatalf("append after the build: %v at %v", err, le)
	}
}

// TestNodeLogAfterRotation: ssf trust rotate while ssf node serve runs: the server's next append is refused
// (trust.ErrTrustRotated) and the new log is not started with the retired key, so a local identity build opens it.
func TestNodeLogAfterRotation(t *testing.T) {
	lh := newLogHome(t)
	h, cfg, l, f := lh.h, lh.cfg, lh.l, lh.f
	nl := &nodeLog{h: h, td: cfg.TrustDomain, turnWait: 200 * time.Millisecond, open: lh.open, current: func() error { return trust.CheckCurrent(l, f) }}
	ctx := context.Background()
	if _, err := nl.append(ctx, dsseEntry(t, `{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := nl.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.RotateTrust(); err != nil {
		t.Fatal(err)
	}
	if _, err := nl.append(ctx, dsseEntry(t, `{"n":2}`)); !errors.Is(err, trust.ErrTrustRotated) {
		t.Fatalf("append after a rotation: %v, want ErrTrustRotated", err)
	}
	// The new log opens with the new key.
	id, err := h.openIdentity(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("a local identity build after the rotation: %v", err)
	}
	if err := id.close(ctx); err != nil {
		t.Fatal(err)
	}
}
