package factory

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"syscall"
)

const noFollow = syscall.O_NOFOLLOW

// lineLog interleaves the output of concurrently running steps line by line, so a line of one step never breaks
// into a line of another.
type lineLog struct {
	mu sync.Mutex
	w  io.Writer
}

// printf writes one line of the control plane's own progress.
func (l *lineLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "[ssf] "+format+"\n", args...)
}

// prefixed returns a writer that copies each complete line, prefixed, to the log and to file.
func (l *lineLog) prefixed(prefix string, file io.Writer) *prefixWriter {
	return &prefixWriter{log: l, prefix: []byte(prefix), file: file}
}

// prefixWriter buffers a step's output until a newline and then writes the whole line.
type prefixWriter struct {
	log    *lineLog
	prefix []byte
	file   io.Writer
	buf    []byte
}

// maxLine bounds how much of a line without a newline is held before it is written anyway.
const maxLine = 64 << 10

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLine {
				w.emit(append(w.buf, '\n'))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
}

// Flush writes a final line that had no newline.
func (w *prefixWriter) Flush() {
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}

func (w *prefixWriter) emit(line []byte) {
	out := make([]byte, 0, len(w.prefix)+len(line))
	out = append(append(out, w.prefix...), line...)
	w.log.mu.Lock()
	w.log.w.Write(out)
	w.log.mu.Unlock()
	w.file.Write(out)
}
