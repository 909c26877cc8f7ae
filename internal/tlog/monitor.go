package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// ErrRollback is wrapped when a log shows a smaller tree than one it showed before.
var ErrRollback = errors.New("transparency log rolled back")

// ErrFork is wrapped when a log's entries or checkpoint do not extend the tree it showed before (a fork, or a
// changed entry).
var ErrFork = errors.New("transparency log forked or changed")

// Fetcher reads a log's published files: tessera's client.HTTPFetcher (any static copy served over HTTP) and
// client.FileFetcher (a directory) are Fetchers.
type Fetcher interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

var (
	_ Fetcher = (*client.HTTPFetcher)(nil)
	_ Fetcher = client.FileFetcher{}
)

// MonitorState is what a monitor remembers of a log between runs: the last verified tree and its compact range
// (the roots of the perfect subtrees along its right edge), which is all it needs to check that the next tree
// extends it without reading the old entries again. Keep one per log origin, not per URL, so a mirror that serves
// an older tree is caught.
type MonitorState struct {
	Origin string   `json:"origin"`
	Size   uint64   `json:"size"`
	Root   []byte   `json:"root"`
	Range  [][]byte `json:"range"`
}

// Monitor fetches the log's checkpoint, verifies its signature, and recomputes the tree from every entry it has
// not verified yet (each entry must parse): the new root must equal the checkpoint's, which also proves the tree
// last seen (prev, nil the first time) is a prefix of it. It returns the new state to keep; on a rollback, a fork,
// a changed or unparseable entry or a bad signature it returns an error wrapping ErrRollback, ErrFork, ErrBadEntry
// or ErrBadCheckpoint that names what is wrong.
func (v *Verifier) Monitor(ctx context.Context, f Fetcher, prev *MonitorState) (*MonitorState, error) {
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching the checkpoint: %w", err)
	}
	cp, err := v.VerifyCheckpoint(raw)
	if err != nil {
		return nil, err
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	if prev != nil {
		if prev.Origin != cp.Origin {
			return nil, fmt.Errorf("%w: the state is for log %q, the checkpoint is from %q", ErrBadCheckpoint, prev.Origin, cp.Origin)
		}
		if cp.Size < prev.Size {
			return nil, fmt.Errorf("%w: the checkpoint has %d entries, %d were verified before", ErrRollback, cp.Size, prev.Size)
		}
		// The range is copied: appending to it would change the caller's state.
		if r, err = rf.NewRange(0, prev.Size, cloneHashes(prev.Range)); err != nil {
			return nil, fmt.Errorf("the monitor state is corrupt: %w", err)
		}
		if root, err := rootOf(r); err != nil || !bytes.Equal(root, prev.Root) {
			return nil, fmt.Errorf("the monitor state is corrupt: its range does not hash to its root")
		}
	}
	for bundle := r.End() / layout.EntryBundleWidth; r.End() < cp.Size; bundle++ {
		b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, bundle, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("fetching entry bundle %d: %w", bundle, err)
		}
		first := bundle * layout.EntryBundleWidth
		for i := r.End() - first; i < uint64(len(b.Entries)) && r.End() < cp.Size; i++ {
			if _, err := ParseEntry(b.Entries[i]); err != nil {
				return nil, fmt.Errorf("entry %d: %w", r.End(), err)
			}
			if err := r.Append(rfc6962.DefaultHasher.HashLeaf(b.Entries[i]), nil); err != nil {
				return nil, err
			}
		}
		if r.End() < min(first+layout.EntryBundleWidth, cp.Size) {
			return nil, fmt.Errorf("%w: entry bundle %d holds %d entries, the checkpoint needs more", ErrFork, bundle, len(b.Entries))
		}
	}
	root, err := rootOf(r)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(root, cp.Hash) {
		from := uint64(0)
		if prev != nil {
			from = prev.Size
		}
		return nil, fmt.Errorf("%w: the entries up to %d, extending the tree of %d entries verified before, hash to %x, but the signed checkpoint says %x",
			ErrFork, cp.Size, from, root, cp.Hash)
	}
	return &MonitorState{Origin: cp.Origin, Size: cp.Size, Root: root, Range: cloneHashes(r.Hashes())}, nil
}

func cloneHashes(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = bytes.Clone(h)
	}
	return out
}

func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}
