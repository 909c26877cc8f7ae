package registry

import (
	"container/heap"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
)

// Listing a directory that pushers fill (tags, referrers) must not cost memory in proportion to what they
// pushed: os.ReadDir holds every entry, and 100,000 tags made each anonymous listing hold ~25 MB. firstNames
// reads in batches and keeps only the names it will answer with.

// readDirBatch is how many entries are read from a directory at once.
const readDirBatch = 1024

// firstNames returns, sorted, the first n names in dir (by byte order) that are greater than after and that
// keep accepts, and whether more such names exist. A missing directory has none. Memory is bounded by n, not by
// the directory's size.
func firstNames(dir, after string, n int, keep func(fs.DirEntry) bool) ([]string, bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	// A max-heap of the n+1 smallest names seen: the extra one tells whether more exist.
	h := &maxHeap{}
	for {
		entries, err := f.ReadDir(readDirBatch)
		for _, e := range entries {
			name := e.Name()
			if name <= after || !keep(e) {
				continue
			}
			if h.Len() <= n {
				heap.Push(h, name)
			} else if name < (*h)[0] {
				(*h)[0] = name
				heap.Fix(h, 0)
			}
		}
		if err == io.EOF || (err == nil && len(entries) == 0) {
			break
		}
		if err != nil {
			return nil, false, err
		}
	}
	names := []string(*h)
	slices.Sort(names)
	if len(names) > n {
		return names[:n], true, nil
	}
	return names, false, nil
}

type maxHeap []string

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
