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
	copyDepth    = 4       // buffers in flight per upload: bounds its memory to 4 MiB
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
	direct := openDirect(f.Name())
	if direct != nil {
		defer direct.Close()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		written, synced := int64(0), int64(0)
		for c := range toWrite {
			if writeErr == nil {
				b, at := (*c.buf)[:c.n], off+written
				var err error
				if direct != nil && at%directAlign == 0 && len(b)%directAlign == 0 {
					if _, err = direct.WriteAt(b, at); err != nil && isInvalid(err) {
						// Not aligned in memory after all, or not supported here: the page cache from now on.
						direct.Close()
						direct, err = nil, nil
						_, err = f.WriteAt(b, at)
					}
				} else {
					_, err = f.WriteAt(b, at)
					if err == nil && written+int64(c.n)-synced >= writebackRun {
						startWriteback(f, off+synced, written+int64(c.n)-synced)
						synced = written + int64(c.n)
					}
				}
				if err != nil {
					writeErr = err
					failed.Store(true)
				}
				written += int64(c.n)
			}
			release(c)
		}
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
