package tlog

import (
	"context"
	"errors"
	"io/fs"
	"sync"
	"time"
)

// publication watches the published checkpoint for Append callers waiting for one that covers their entry. One
// goroutine reads the checkpoint file, only while someone waits, and verifies each new one with the log key before
// anyone sees it: a checkpoint the log did not sign is never handed out.
type publication struct {
	key  *logKey
	read func(context.Context) ([]byte, error)

	mu      sync.Mutex
	latest  *Checkpoint
	err     error         // the last read's error, reported to waiters
	changed chan struct{} // closed and replaced when latest or err changes
	waiters int
	wake    chan struct{}
}

func newPublication(ctx context.Context, key *logKey, read func(context.Context) ([]byte, error), period time.Duration) *publication {
	p := &publication{key: key, read: read, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
	go p.watch(ctx, period)
	return p
}

func (p *publication) watch(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		p.mu.Lock()
		idle := p.waiters == 0
		p.mu.Unlock()
		if idle {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
		}
		p.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *publication) poll(ctx context.Context) {
	raw, err := p.read(ctx)
	var cp *Checkpoint
	if err == nil {
		cp, err = p.key.parseCheckpoint(raw)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.err = err
	} else if p.latest == nil || cp.Size > p.latest.Size {
		p.latest, p.err = cp, nil
	} else {
		return
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// await returns the first published checkpoint that covers index.
func (p *publication) await(ctx context.Context, index uint64) (*Checkpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.latest == nil || p.latest.Size <= index {
		if p.err != nil {
			return nil, p.err
		}
		ch := p.changed
		p.waiters++
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
		var done bool
		select {
		case <-ch:
		case <-ctx.Done():
			done = true
		}
		p.mu.Lock()
		p.waiters--
		if done {
			return nil, ctx.Err()
		}
	}
	return p.latest, nil
}

// current reads the published checkpoint now.
func (p *publication) current(ctx context.Context) (*Checkpoint, error) {
	raw, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	latest := p.latest
	p.mu.Unlock()
	if latest != nil && string(latest.Raw) == string(raw) {
		return latest, nil // verified when it was first seen
	}
	return p.key.parseCheckpoint(raw)
}
