package factory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ssf-dev/ssf/internal/tlog"
)

// turnWatch is how often a build holding the transparency log between signatures looks whether another process
// waits for its turn. A poll, because a lock held elsewhere cannot notify; the probe is one non-blocking flock.
const turnWatch = 50 * time.Millisecond

// turnLog is the factory's transparency log as one build holds it. The log admits one appender, so builds of a
// factory take turns on it (home.Layout.LogTurn); but a build signs only at moments (a task's end, the provenance
// and SBOMs), so it holds the turn only while it signs or while nobody else wants it. Between signatures, when
// another build (or `ssf node serve` for a joined node) waits for the turn, it closes the log and gives the turn
// up, and takes it again, waiting its own turn, at its next signature. A lone build opens the log once; builds
// side by side pay a reopen (the log's publication delay, about 100 ms) only when they hand the log over.
type turnLog struct {
	turnPath string
	open     func(ctx context.Context) (*tlog.Log, error)
	say      io.Writer // where a build says it waits for its turn; may be nil

	mu    sync.Mutex
	log   *tlog.Log
	turn  *os.File
	users int // appends in flight
	done  chan struct{}
	ended sync.WaitGroup
}

// openTurnLog takes the log's turn (waiting for it as long as ctx allows) and opens the log, so that a build that
// cannot have the log learns so at admission; then it watches for others waiting until close.
func openTurnLog(ctx context.Context, turnPath string, open func(context.Context) (*tlog.Log, error), say io.Writer) (*turnLog, error) {
	t := &turnLog{turnPath: turnPath, open: open, say: say, done: make(chan struct{})}
	if err := t.takeLocked(ctx); err != nil {
		return nil, err
	}
	t.ended.Add(1)
	go t.watch()
	return t, nil
}

// errLogHeld is returned when a process holds the log without its turn (`ssf log serve --accept-entries`).
var errLogHeld = errors.New("the transparency log is held by another process (`ssf log serve --accept-entries`?)")

// takeLocked takes the turn and opens the log; t.mu is held (or t is not shared yet).
func (t *turnLog) takeLocked(ctx context.Context) error {
	turn, err := takeTurn(ctx, t.turnPath, t.say)
	if err != nil {
		return fmt.Errorf("waiting for the transparency log: %w", err)
	}
	lg, err := t.open(ctx)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		turn.Close()
		return errLogHeld
	} else if err != nil {
		turn.Close()
		return err
	}
	t.log, t.turn = lg, turn
	return nil
}

// Append appends e durably, taking the log's turn again first if the build gave it up.
func (t *turnLog) Append(ctx context.Context, e tlog.Entry) (*tlog.LogEntry, error) {
	t.mu.Lock()
	if t.log == nil {
		if err := t.takeLocked(ctx); err != nil {
			t.mu.Unlock()
			return nil, err
		}
	}
	t.users++
	lg := t.log
	t.mu.Unlock()

	le, err := lg.Append(ctx, e)

	t.mu.Lock()
	t.users--
	t.mu.Unlock()
	return le, err
}

// watch gives the log and its turn up whenever no append is in flight and another process waits for the turn.
func (t *turnLog) watch() {
	defer t.ended.Done()
	tick := time.NewTicker(turnWatch)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		t.mu.Lock()
		if t.log != nil && t.users == 0 && buildWaiting(t.turnPath) {
			// A failed close is not lost: every acknowledged append is already durable, and the next take reopens.
			_ = t.releaseLocked(context.Background())
		}
		t.mu.Unlock()
	}
}

// releaseLocked closes the log and gives its turn back; t.mu is held.
func (t *turnLog) releaseLocked(ctx context.Context) error {
	if t.log == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := t.log.Close(ctx)
	t.turn.Close()
	t.log, t.turn = nil, nil
	return err
}

// Close stops watching and releases the log for good; appends must have ended.
func (t *turnLog) Close(ctx context.Context) error {
	close(t.done)
	t.ended.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.releaseLocked(ctx)
}
