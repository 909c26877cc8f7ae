package tlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// timeStore keeps each entry's integrated time (unix seconds, big-endian int64) at offset 8*index of one file.
// Zero means "not stored". A slot is written once, after its index is durably integrated and before the entry is
// acknowledged; 8-byte aligned writes never tear across a sector, so a crash leaves each slot old (zero) or new.
// One writer (the Log's stamping goroutine) writes a whole batch and syncs once.
type timeStore struct {
	f *os.File
}

func openTimeStore(path string) (*timeStore, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening integrated times %q: %w", path, err)
	}
	return &timeStore{f: f}, nil
}

// put stores unix as the integrated time of every index, durably.
func (ts *timeStore) put(indices []uint64, unix int64) error {
	group := slices.Clone(indices)
	slices.Sort(group)
	// Coalesce runs of consecutive indices into one write each.
	buf := make([]byte, 0, 8*len(group))
	start := 0
	for i := range group {
		buf = binary.BigEndian.AppendUint64(buf, uint64(unix))
		if i+1 < len(group) && group[i+1] == group[i]+1 {
			continue
		}
		if _, err := ts.f.WriteAt(buf, int64(8*group[start])); err != nil {
			return fmt.Errorf("writing integrated times: %w", err)
		}
		buf, start = buf[:0], i+1
	}
	if err := fdatasync(ts.f); err != nil {
		return fmt.Errorf("syncing integrated times: %w", err)
	}
	return nil
}

// get returns the integrated time of index, or 0 when none is stored.
func (ts *timeStore) get(index uint64) (int64, error) {
	var b [8]byte
	_, err := ts.f.ReadAt(b[:], int64(8*index))
	if errors.Is(err, io.EOF) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading integrated time of entry %d: %w", index, err)
	}
	return int64(binary.BigEndian.Uint64(b[:])), nil
}

// fill stores unix as the time of every index below size that has none (entries integrated just before a crash,
// never acknowledged), then syncs.
func (ts *timeStore) fill(size uint64, unix int64) error {
	const chunk = 1 << 16
	buf := make([]byte, 8*chunk)
	for first := uint64(0); first < size; first += chunk {
		n := min(chunk, size-first)
		b := buf[:8*n]
		m, err := ts.f.ReadAt(b, int64(8*first))
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading integrated times: %w", err)
		}
		clear(b[m:])
		changed := false
		for i := range n {
			if binary.BigEndian.Uint64(b[8*i:]) == 0 {
				binary.BigEndian.PutUint64(b[8*i:], uint64(unix))
				changed = true
			}
		}
		if changed {
			if _, err := ts.f.WriteAt(b, int64(8*first)); err != nil {
				return fmt.Errorf("writing integrated times: %w", err)
			}
		}
	}
	if err := fdatasync(ts.f); err != nil {
		return fmt.Errorf("syncing integrated times: %w", err)
	}
	return nil
}

func (ts *timeStore) close() error { return ts.f.Close() }
