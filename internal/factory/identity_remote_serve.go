package factory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/ssf-dev/ssf/internal/tlog"
	"github.com/ssf-dev/ssf/internal/trust"
)

// The factory side of the node API (`ssf node serve`): the CA and TSA are loaded once; the transparency log is
// opened only while nodes append to it, under the same turn lock local identity builds take (home.Layout.LogTurn),
// so that a build on the factory node and a joined node's build take turns instead of one of them failing.

// Node API log bounds.
const (
	// nodeLogTurnWait is how long an append waits for a local build to give up the log before it is answered 503.
	nodeLogTurnWait = 30 * time.Second
	// nodeLogIdle is how long the server keeps the log (and its turn) after the last append: a build's signatures
	// come in bursts, and reopening costs each append the log's publication delay.
	nodeLogIdle = 2 * time.Second
	// nodeLogMaxHold is how long the server keeps the turn while a local build waits for it: appends that keep
	// coming (a busy node, or one replaying a request every second) would otherwise keep it for ever.
	nodeLogMaxHold = 2 * time.Second
)

// nodeLog is the factory's log as the node API appends to it.
type nodeLog struct {
	h    Home
	td   string
	open func(ctx context.Context) (*tlog.Log, error)
	// current returns trust.ErrTrustRotated when the log key open uses is no longer the factory's: checked with
	// the turn held, so that a rotation (which takes the turn) is never half seen.
	current func() error

	turnWait time.Duration // nodeLogTurnWait unless set (tests)
	maxHold  time.Duration // nodeLogMaxHold unless set (tests)

	mu       sync.Mutex
	ended    *sync.Cond // signalled when users drops to 0
	log      *tlog.Log
	turn     *os.File
	opened   time.Time // when the log (and its turn) was taken
	yielding bool      // the turn is being given to a waiting build once appends in flight end
	users    int
	idle     *time.Timer
}

// append appends e, opening the log (after taking its turn) if it is not open.
func (n *nodeLog) append(ctx context.Context, e tlog.Entry) (*tlog.LogEntry, error) {
	n.mu.Lock()
	if n.idle != nil {
		n.idle.Stop()
		n.idle = nil
	}
	if n.ended == nil {
		n.ended = sync.NewCond(&n.mu)
	}
	// A local build waits for the turn and the server has held it long enough: give it up once the appends in
	// flight end; openLocked below then lets every waiting build go first.
	maxHold := n.maxHold
	if maxHold == 0 {
		maxHold = nodeLogMaxHold
	}
	if n.log != nil && !n.yielding && time.Since(n.opened) >= maxHold && buildWaiting(n.h.layout().LogTurn()) {
		n.yielding = true
	}
	for n.yielding && n.users > 0 {
		n.ended.Wait()
	}
	if n.yielding {
		n.yielding = false
		if err := n.closeLocked(); err != nil {
			n.mu.Unlock()
			return nil, fmt.Errorf("closing the transparency log for a waiting build: %w", err)
		}
	}
	if n.log == nil {
		if err := n.openLocked(ctx); err != nil {
			n.mu.Unlock()
			return nil, err
		}
	}
	n.users++
	lg := n.log
	n.mu.Unlock()

	le, err := appendNew(ctx, lg, e)

	n.mu.Lock()
	n.users--
	if n.users == 0 {
		n.ended.Broadcast()
		n.idle = time.AfterFunc(nodeLogIdle, n.closeIfIdle)
	}
	n.mu.Unlock()
	return le, err
}

// appendNew appends e unless the log holds it already (a replayed request), as the log's REST API refuses it.
// Two identical requests at once may both be appended, as there.
func appendNew(ctx context.Context, lg *tlog.Log, e tlog.Entry) (*tlog.LogEntry, error) {
	if i, err := lg.FindLeaf(ctx, rfc6962.DefaultHasher.HashLeaf(e.Body())); err == nil {
		return nil, fmt.Errorf("%w (index %d)", trust.ErrLogDuplicate, i)
	} else if !errors.Is(err, tlog.ErrNotFound) {
		return nil, fmt.Errorf("looking the entry up in the transparency log: %w", err)
	}
	return lg.Append(ctx, e)
}

func (n *nodeLog) openLocked(ctx context.Context) error {
	l := n.h.layout()
	wait := n.turnWait
	if wait == 0 {
		wait = nodeLogTurnWait
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// Builds that wait for the turn go first: the lock on the waiters' file is free only once none waits
	// (each lets go of it when it has the turn). Taken and dropped at once; it only orders.
	waiters, err := lockTurn(wctx, turnWaiters(l.LogTurn()), nil, false)
	if err == nil {
		waiters.Close()
		var turn *os.File
		// As a waiter: a build that holds the log between its signatures gives it up to one (turnLog.watch).
		if turn, err = lockTurn(wctx, l.LogTurn(), nil, true); err == nil {
			return n.openWithTurn(ctx, turn)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%w: a build on the factory node held it for over %v; retry when it is done", trust.ErrLogBusy, wait)
	}
	return fmt.Errorf("waiting for the transparency log: %w", err)
}

// openWithTurn opens the log once the server has its turn.
func (n *nodeLog) openWithTurn(ctx context.Context, turn *os.File) error {
	if n.current != nil {
		if err := n.current(); err != nil {
			turn.Close()
			return err
		}
	}
	lg, err := n.open(ctx)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		turn.Close()
		return fmt.Errorf("%w: it is held by another process (`ssf log serve --accept-entries`?)", trust.ErrLogBusy)
	} else if err != nil {
		turn.Close()
		return fmt.Errorf("opening the transparency log: %w", err)
	}
	n.log, n.turn, n.opened = lg, turn, time.Now()
	return nil
}

// closeIfIdle closes the log and gives back its turn when no append is in flight.
func (n *nodeLog) closeIfIdle() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.users == 0 {
		n.closeLocked()
	}
}

func (n *nodeLog) closeLocked() error {
	if n.log == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := n.log.Close(ctx)
	n.turn.Close()
	n.log, n.turn = nil, nil
	return err
}

// close closes the log for good (the server is stopping; appends in flight have ended).
func (n *nodeLog) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.idle != nil {
		n.idle.Stop()
	}
	return n.closeLocked()
}

// NodeServer is the handler of `ssf node serve` on this factory: joins (trust.JoinHandler) and the node API
// (trust.NodeAPI) for joined nodes' keyless builds. The returned function closes the transparency log once the
// server has stopped.
func (h Home) NodeServer(logf func(format string, args ...any)) (http.Handler, func() error, error) {
	cfg, err := h.Config()
	if err != nil {
		return nil, nil, err
	}
	l := h.layout()
	o := trust.Options{TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer}
	f, err := trust.Load(l, o)
	if err != nil {
		return nil, nil, inputErrorf("serving the node API: loading the factory trust (run ssf node serve on the factory that holds the CA): %w", err)
	}
	tr, err := h.TrustedRoot()
	if err != nil {
		return nil, nil, err
	}
	nl := &nodeLog{h: h, td: cfg.TrustDomain, open: func(ctx context.Context) (*tlog.Log, error) {
		return tlog.Open(ctx, l.Log(), f.TLogKey, tlog.WithHost(cfg.TrustDomain))
	}, current: func() error { return trust.CheckCurrent(l, f) }}
	api := &trust.NodeAPI{Layout: l, Factory: f, TrustDomain: cfg.TrustDomain, Issuer: cfg.Issuer, TrustedRoot: tr,
		Append: nl.append, Logf: logf}
	return trust.NodeHandler(trust.JoinHandler(h.AdmitNode, logf), api), nl.close, nil
}
