package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// leafIndex finds an entry by its leaf hash (a Rekor UUID). It keeps the first 8 bytes of every published leaf
// hash at offset 8*index of `.ssf/leaf-index`, so memory stays constant whatever the log's size and the index
// survives restarts; a lookup scans the file (8 MB per million entries, from the page cache) and confirms each
// candidate against the full leaf hash of the stored entry, so a damaged or stale file can only miss an entry,
// never name a wrong one. Entries appended by this process and not yet published are remembered in memory until
// the file covers them.
type leafIndex struct {
	mu     sync.Mutex
	f      *os.File
	done   uint64              // entries [0, done) are in f
	recent map[[32]byte]uint64 // appended here, maybe not yet in f
	// active is set by the first lookup: a Log nobody looks up in (the factory's) keeps no recent entries, and
	// one that is looked up in prunes them at every lookup, so recent stays small.
	active bool
}

const leafPrefix = 8

func openLeafIndex(path string) (*leafIndex, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the leaf index %q: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the leaf index %q: %w", path, err)
	}
	// A crash may have left the last bundle's worth half written: redo it from the tiles.
	done := uint64(fi.Size()) / leafPrefix
	done -= done % layout.EntryBundleWidth
	return &leafIndex{f: f, done: done, recent: map[[32]byte]uint64{}}, nil
}

func (x *leafIndex) close() error { return x.f.Close() }

// record remembers that body was appended at index (its leaf hash is computed only when someone looks up).
func (x *leafIndex) record(body []byte, index uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.active && index >= x.done {
		x.recent[[32]byte(rfc6962.DefaultHasher.HashLeaf(body))] = index
	}
}

// catchUp adds the published entries [done, size) to the file, reading their entry bundles, and syncs it.
func (x *leafIndex) catchUp(ctx context.Context, read client.EntryBundleFetcherFunc, size uint64) error {
	if x.done >= size {
		return nil
	}
	buf := make([]byte, 0, leafPrefix*layout.EntryBundleWidth)
	for x.done < size {
		bundle := x.done / layout.EntryBundleWidth
		first := bundle * layout.EntryBundleWidth
		b, err := client.GetEntryBundle(ctx, read, bundle, size)
		if err != nil {
			return fmt.Errorf("indexing entry bundle %d: %w", bundle, err)
		}
		buf = buf[:0]
		for i := x.done - first; i < uint64(len(b.Entries)) && first+i < size; i++ {
			h := rfc6962.DefaultHasher.HashLeaf(b.Entries[i])
			buf = append(buf, h[:leafPrefix]...)
		}
		if len(buf) == 0 {
			return fmt.Errorf("indexing entry bundle %d: it holds %d entries, the tree needs more", bundle, len(b.Entries))
		}
		if _, err := x.f.WriteAt(buf, int64(leafPrefix*x.done)); err != nil {
			return fmt.Errorf("writing the leaf index: %w", err)
		}
		x.done += uint64(len(buf) / leafPrefix)
	}
	if err := fdatasync(x.f); err != nil {
		return fmt.Errorf("syncing the leaf index: %w", err)
	}
	for leaf, i := range x.recent {
		if i < x.done {
			delete(x.recent, leaf)
		}
	}
	return nil
}

// candidates returns the indices below done whose leaf hash starts like leaf's, in order.
func (x *leafIndex) candidates(leaf []byte) ([]uint64, error) {
	var out []uint64
	const chunk = 1 << 17 // entries per read: 1 MiB
	buf := make([]byte, leafPrefix*chunk)
	for first := uint64(0); first < x.done; first += chunk {
		n := min(chunk, x.done-first)
		b := buf[:leafPrefix*n]
		if _, err := x.f.ReadAt(b, int64(leafPrefix*first)); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the leaf index: %w", err)
		}
		for i := range n {
			if bytes.Equal(b[leafPrefix*i:leafPrefix*(i+1)], leaf[:leafPrefix]) {
				out = append(out, first+i)
			}
		}
	}
	return out, nil
}

// FindLeaf returns the index of the entry whose RFC 6962 leaf hash is leaf (a Rekor entry UUID), among the
// published entries and those this Log appended; it wraps ErrNotFound when there is none.
func (l *Log) FindLeaf(ctx context.Context, leaf []byte) (uint64, error) {
	if len(leaf) != 32 {
		return 0, fmt.Errorf("leaf hash %x is %d bytes, not 32", leaf, len(leaf))
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	x := l.leaves
	x.mu.Lock()
	defer x.mu.Unlock()
	x.active = true
	if err := x.catchUp(ctx, l.reader.ReadEntryBundle, cp.Size); err != nil {
		return 0, err
	}
	if i, ok := x.recent[[32]byte(leaf)]; ok {
		return i, nil
	}
	cands, err := x.candidates(leaf)
	if err != nil {
		return 0, err
	}
	for _, i := range cands {
		body, err := l.leafData(ctx, i, cp.Size)
		if err != nil {
			return 0, err
		}
		if h := rfc6962.DefaultHasher.HashLeaf(body); bytes.Equal(h, leaf) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("leaf %x: %w", leaf, ErrNotFound)
}
