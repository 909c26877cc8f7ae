package tlog

import (
	"context"
	"sync"
)

// publication reads the published checkpoint and verifies it with the log key before anyone sees it: a checkpoint
// the log did not sign is never handed out. It remembers the last one it verified, so rereading an unchanged file
// costs no signature check.
type publication struct {
	key  *logKey
	read func(context.Context) ([]byte, error)

	mu     sync.Mutex
	latest *Checkpoint
}

// current reads the published checkpoint now.
func (p *publication) current(ctx context.Context) (*Checkpoint, error) {
	raw, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.latest != nil && string(p.latest.Raw) == string(raw) {
		return p.latest, nil
	}
	cp, err := p.key.parseCheckpoint(raw)
	if err != nil {
		return nil, err
	}
	p.latest = cp
	return cp, nil
}
