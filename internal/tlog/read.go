package tlog

import (
	"context"
	"encoding/pem"
	"fmt"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// The read side answers from the tiles and the published checkpoint only, as a monitor or a static mirror would,
// so what it says is what anyone can check.

// Checkpoint returns the published checkpoint, verified with the log key.
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	cp, err := l.pub.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint of log %q: %w", l.dir, err)
	}
	return cp, nil
}

// Entry returns entry index of the published log, with a fresh SET and an inclusion proof against the current
// checkpoint. An entry that is integrated but not yet published (tessera publishes within checkpointInterval)
// is waited for, so an entry is readable as soon as Append acknowledged it.
func (l *Log) Entry(ctx context.Context, index uint64) (*LogEntry, error) {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if index >= cp.Size {
		if cp, err = l.awaitIntegrated(ctx, index); err != nil {
			return nil, err
		}
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("entry %d: %w (the checkpoint has %d entries)", index, ErrNotFound, cp.Size)
	}
	body, err := l.leafData(ctx, index, cp.Size)
	if err != nil {
		return nil, err
	}
	e, err := ParseEntry(body)
	if err != nil {
		return nil, fmt.Errorf("entry %d as stored: %w", index, err)
	}
	t, err := l.times.get(index)
	if err != nil {
		return nil, err
	}
	if t == 0 {
		return nil, fmt.Errorf("entry %d: its integrated time is not stored yet (it is being appended): %w", index, ErrNotYet)
	}
	return l.logEntry(ctx, e.kind, body, index, t, cp)
}

// leafData reads the stored body of index from its entry bundle, for a tree of size entries.
func (l *Log) leafData(ctx context.Context, index, size uint64) ([]byte, error) {
	b, err := client.GetEntryBundle(ctx, l.reader.ReadEntryBundle, index/layout.EntryBundleWidth, size)
	if err != nil {
		return nil, fmt.Errorf("reading the entry bundle of entry %d: %w", index, err)
	}
	i := index % layout.EntryBundleWidth
	if i >= uint64(len(b.Entries)) {
		return nil, fmt.Errorf("the entry bundle of entry %d has only %d entries", index, len(b.Entries))
	}
	return b.Entries[i], nil
}

// InclusionProof returns the proof that entry index is in the tree of size treeSize (at most the published size).
func (l *Log) InclusionProof(ctx context.Context, index, treeSize uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, treeSize); err != nil {
		return nil, err
	}
	if index >= treeSize {
		return nil, fmt.Errorf("inclusion proof of entry %d in a tree of %d entries: index out of range", index, treeSize)
	}
	p, err := l.inclusionProof(ctx, index, treeSize)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof of entry %d at size %d: %w", index, treeSize, err)
	}
	return p, nil
}

// ConsistencyProof returns the proof that the tree of size from is a prefix of the tree of size to (at most the
// published size).
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, to); err != nil {
		return nil, err
	}
	if from > to {
		return nil, fmt.Errorf("consistency proof from size %d to %d: the first size is larger", from, to)
	}
	p, err := l.consistencyProof(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("consistency proof from size %d to %d: %w", from, to, err)
	}
	return p, nil
}

// checkSize refuses tree sizes beyond the published checkpoint: tiles past it are not part of the log yet.
func (l *Log) checkSize(ctx context.Context, size uint64) error {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return err
	}
	if size > cp.Size {
		return fmt.Errorf("tree size %d: %w (the checkpoint has %d entries)", size, ErrNotFound, cp.Size)
	}
	return nil
}

// RootAt returns the root hash of the tree of size entries (at most the published size).
func (l *Log) RootAt(ctx context.Context, size uint64) ([]byte, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, err
	}
	root, err := l.rootAt(ctx, size)
	if err != nil {
		return nil, fmt.Errorf("root hash at size %d: %w", size, err)
	}
	return root, nil
}

// PublicKeyPEM is the log's public key as a PEM "PUBLIC KEY" block (PKIX DER), as Rekor serves it.
func (l *Log) PublicKeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: l.key.der})
}

// awaitIntegrated waits (at most a few checkpoint intervals) for a checkpoint covering index when the durable tree
// covers it already, and returns the current checkpoint otherwise.
func (l *Log) awaitIntegrated(ctx context.Context, index uint64) (*Checkpoint, error) {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	size, err := l.reader.IntegratedSize(ctx)
	l.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("reading the integrated tree size: %w", err)
	}
	if index < size {
		wctx, cancel := context.WithTimeout(ctx, 20*checkpointInterval)
		defer cancel()
		l.mu.RLock()
		err := l.awaitPublished(wctx, index+1)
		l.mu.RUnlock()
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
	}
	return l.Checkpoint(ctx)
}
