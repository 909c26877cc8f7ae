package factory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/tlog"
	"github.com/ssf-dev/ssf/internal/trust"
)

// TestBuildsTakeTurnsBetweenSignatures: two identity builds of one factory share its log. The first holds it from
// admission; the second's admission waits only until the first, idle between signatures, gives the log up — not
// until the first build ends — and the first takes it back, waiting its turn, at its next signature. Every entry
// both appended is in the log.
func TestBuildsTakeTurnsBetweenSignatures(t *testing.T) {
	lh := newLogHome(t)
	l, open := lh.l, lh.open
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a, err := openTurnLog(ctx, l.LogTurn(), open, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, dsseEntry(t, `{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	// b's admission waits for the turn, and gets it while a is still open (a has not been closed).
	b, err := openTurnLog(ctx, l.LogTurn(), open, nil)
	if err != nil {
		t.Fatalf("a second build did not get the log while the first was idle: %v", err)
	}
	a.mu.Lock()
	gaveUp := a.log == nil
	a.mu.Unlock()
	if !gaveUp {
		t.Fatal("the first build still holds the log while the second has it")
	}
	if _, err := b.Append(ctx, dsseEntry(t, `{"b":1}`)); err != nil {
		t.Fatal(err)
	}
	// a signs again: it waits for b to give the log up (b is idle), then appends.
	le, err := a.Append(ctx, dsseEntry(t, `{"a":2}`))
	if err != nil {
		t.Fatalf("the first build could not sign again: %v", err)
	}
	if le.LogIndex != 2 {
		t.Fatalf("third entry at index %d, want 2", le.LogIndex)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Both gave the turn back: a third build takes it at once.
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	defer wcancel()
	turn, err := takeTurn(wctx, l.LogTurn(), nil)
	if err != nil {
		t.Fatalf("the turn was kept after close: %v", err)
	}
	turn.Close()
}

// TestIdleBuildYieldsToTheNodeAPI: a joined node's append through `ssf node serve` does not wait for a local
// identity build to end: the build, idle between signatures, gives the log up to it.
func TestIdleBuildYieldsToTheNodeAPI(t *testing.T) {
	lh := newLogHome(t)
	l, open := lh.l, lh.open
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	build, err := openTurnLog(ctx, l.LogTurn(), open, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer build.Close(ctx)
	nl := &nodeLog{h: lh.h, td: lh.cfg.TrustDomain, turnWait: 5 * time.Second, open: open}
	defer nl.close()
	if _, err := nl.append(ctx, dsseEntry(t, `{"node":1}`)); err != nil {
		t.Fatalf("the node API waited for an idle build: %v", err)
	}
}

// logHome is a factory home made for a test of its transparency log: its config, layout, trust, and a function
// that opens its log as builds and the node API do.
type logHome struct {
	h    Home
	cfg  Config
	l    home.Layout
	f    *trust.Factory
	open func(context.Context) (*tlog.Log, error)
}

func newLogHome(t *testing.T) logHome {
	t.Helper()
	h := Home{Dir: t.TempDir()}
	if _, err := h.Init(); err != nil {
		t.Fatal(err)
	}
	cfg, err := h.Config()
	if err != nil {
		t.Fatal(err)
	}
	l := h.layout()
	f, err := trust.Load(l, trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	return logHome{h: h, cfg: cfg, l: l, f: f, open: turnLogOpener(l, f, cfg.TrustDomain)}
}

// TestRotationBetweenSignaturesFailsTheBuild: a build gives the log's turn up between its signatures, and `ssf
// trust rotate` takes the turn. A build whose trust was rotated so must fail at its next signature rather than
// start the new log under the retired log key (which left the log unopenable by every later build, while the
// build itself reported success with a provenance that did not verify).
func TestRotationBetweenSignaturesFailsTheBuild(t *testing.T) {
	lh := newLogHome(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := openTurnLog(ctx, lh.l.LogTurn(), lh.open, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	if _, err := a.Append(ctx, dsseEntry(t, `{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	// Another build takes the turn (a, idle, gives it up) and ends; the turn is free between a's signatures.
	b, err := openTurnLog(ctx, lh.l.LogTurn(), lh.open, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := trust.Rotate(lh.l, trust.Options{TrustDomain: lh.cfg.TrustDomain, Issuer: lh.cfg.Issuer}); err != nil {
		t.Fatalf("rotating between a build's signatures: %v", err)
	}
	if _, err := a.Append(ctx, dsseEntry(t, `{"a":2}`)); !errors.Is(err, errRotatedMidBuild) {
		t.Fatalf("a build signed after its trust was rotated: %v, want %v", err, errRotatedMidBuild)
	}
	// The new log is the new key's: a build that loads the rotated trust appends to it.
	f, err := trust.Load(lh.l, trust.Options{TrustDomain: lh.cfg.TrustDomain, Issuer: lh.cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	c, err := openTurnLog(ctx, lh.l.LogTurn(), turnLogOpener(lh.l, f, lh.cfg.TrustDomain), nil)
	if err != nil {
		t.Fatalf("a build after the rotation: %v", err)
	}
	if le, err := c.Append(ctx, dsseEntry(t, `{"c":1}`)); err != nil || le.LogIndex != 0 {
		t.Fatalf("first entry of the new log: %+v, %v", le, err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
