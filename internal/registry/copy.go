package registry

import (
	"errors"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Streaming a blob in: hashing (one core's SHA-256 rate is the limit of a verifying registry) runs beside
// reading the network and writing the file, each on its own goroutine, over a few large buffers that both
// consumers read (no copies between them). The file's pages are handed to the disk as they are written, so the
// fsync before commit finds little left to do.
const (
	copyBufSize  = 1 << 20
	copyDepth    = 6       // buffers in flight per upload: bounds its memory to 6 MiB
	copyWriters  = 3       // direct writes in flight per upload
	writebackRun = 8 << 20 // start writing back every 8 MiB
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyHashed appends src to f (at its current offset off) and to h, and returns the bytes copied. On error some
// bytes may have been written; the caller cuts the file back.
func copyHashed(f *os.File, off int64, h hash.Hash, src io.Reader) (int64, error) {
	first := copyBufs.Get().(*[]byte)
	n, err := io.ReadFull(src, *first)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		// The whole body fits one buffer (small blobs, manifests' blobs): no goroutines.
		defer copyBufs.Put(first)
		b := (*first)[:n]
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			return 0, err
		}
		return int64(n), nil
	}
	if err != nil {
		copyBufs.Put(first)
		return 0, err
	}

	type chunk struct {
		buf  *[]byte
		n    int
		refs atomic.Int32
	}
	free := make(chan *[]byte, copyDepth)
	for range copyDepth - 1 {
		free <- copyBufs.Get().(*[]byte)
	}
	release := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			free <- c.buf
		}
	}
	toWrite, toHash := make(chan *chunk, copyDepth), make(chan *chunk, copyDepth)
	var writeErr error
	var failed atomic.Bool
	// Writing through the page cache copies every byte once more, which costs more CPU than hashing it on some
	// machines; aligned whole blocks therefore go to the disk directly (O_DIRECT) where the file system allows,
	// and the rest (an unaligned start or tail) through the page cache.
	var direct atomic.Pointer[os.File]
	if d := openDirect(f.Name()); d != nil {
		direct.Store(d)
		defer d.Close()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// Up to copyWriters writes are in flight at once: one direct write at a time leaves the disk idle
		// between requests. Each write names its offset, so their order does not matter.
		var (
			writes  sync.WaitGroup
			slots   = make(chan struct{}, copyWriters)
			mu      sync.Mutex
			written int64
			synced  int64
		)
		setErr := func(err error) {
			mu.Lock()
			if writeErr == nil {
				writeErr = err
			}
			mu.Unlock()
			failed.Store(true)
		}
		for c := range toWrite {
			at := off + written
			written += int64(c.n)
			if failed.Load() {
				release(c)
				continue
			}
			b := (*c.buf)[:c.n]
			if d := direct.Load(); d != nil && at%directAlign == 0 && len(b)%directAlign == 0 {
				slots <- struct{}{}
				writes.Go(func() {
					defer func() { <-slots; release(c) }()
					if _, err := d.WriteAt(b, at); err != nil {
						if !isInvalid(err) {
							setErr(err)
							return
						}
						// Not aligned in memory after all, or not supported here: the page cache from now on.
						direct.CompareAndSwap(d, nil)
						if _, err := f.WriteAt(b, at); err != nil {
							setErr(err)
						}
					}
				})
				continue
			}
			if _, err := f.WriteAt(b, at); err != nil {
				setErr(err)
			}
			if written-synced >= writebackRun {
				startWriteback(f, off+synced, written-synced)
				synced = written
			}
			release(c)
		}
		writes.Wait()
	})
	wg.Go(func() {
		for c := range toHash {
			h.Write((*c.buf)[:c.n])
			release(c)
		}
	})
	var total int64
	buf, readErr := first, error(nil)
	for {
		c := &chunk{buf: buf, n: n}
		c.refs.Store(2)
		total += int64(n)
		toWrite <- c
		toHash <- c
		if failed.Load() {
			break
		}
		buf = <-free
		n, readErr = io.ReadFull(src, *buf)
		if readErr == io.EOF || readErr == io.ErrUnexpectedEOF {
			readErr = nil
			if n == 0 {
				free <- buf
				break
			}
			c := &chunk{buf: buf, n: n}
			c.refs.Store(2)
			total += int64(n)
			toWrite <- c
			toHash <- c
			break
		}
		if readErr != nil {
			free <- buf
			break
		}
	}
	close(toWrite)
	close(toHash)
	wg.Wait()
	for range copyDepth {
		copyBufs.Put(<-free)
	}
	return total, errors.Join(readErr, writeErr)
}
