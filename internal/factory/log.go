package factory

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// lineLog interleaves the output of concurrently running steps line by line, so a line of one step never breaks
// into a line of another.
type lineLog struct {
	mu sync.Mutex
	w  io.Writer
	// redact, once the build's secrets are read (before anything runs concurrently), replaces their values in the
	// control plane's own lines, which can quote what a step made (an output's name): secrets.go.
	redact func([]byte) []byte

	stepBytes atomic.Int64 // bytes of step output this build has logged, over all its tasks (bounded by maxBuildLog)
}

// printf writes one line of the control plane's own progress.
func (l *lineLog) printf(format string, args ...any) {
	line := fmt.Appendf(nil, "[ssf] "+format+"\n", args...)
	if l.redact != nil {
		line = l.redact(line)
	}
	l.write(terminalSafe(line))
}

// prefixed returns a writer that copies each complete line, prefixed, to the log and to file.
// written counts the bytes of the whole task's log, shared by the writers of its steps.
func (l *lineLog) prefixed(prefix string, file io.Writer, written *int64) *prefixWriter {
	return &prefixWriter{log: l, prefix: []byte(prefix), file: file, written: written}
}

// prefixWriter buffers a step's output until a newline and then writes the whole line.
type prefixWriter struct {
	log    *lineLog
	prefix []byte
	file   io.Writer

	buf       []byte
	written   *int64
	truncated bool

	networkError bool // a line read like a failed DNS lookup or connection
}

// networkErrors are what common tools print when a name does not resolve or a connection cannot be made: in a
// task, which has no network, they mean the step tried to fetch something itself.
var networkErrors = [][]byte{
	[]byte("dial tcp"), []byte("dial udp"), []byte("no such host"), []byte("Could not resolve host"),
	[]byte("getaddrinfo"), []byte("ENOTFOUND"), []byte("EAI_AGAIN"), []byte("etwork is unreachable"),
	[]byte("Temporary failure in name resolution"), []byte("Temporary failure resolving"),
	[]byte("Name or service not known"), []byte("wget: bad address"), []byte("no servers could be reached"),
	[]byte("Failed to establish a new connection"),
}

// networkHint is said when a step fails after a network error.
const networkHint = "tasks have no network: ssf fetches what a build needs before any task runs; declare it in " +
	"the pipeline's spec.dependencies (gomod, npm, or file with a sha256; see docs/dependencies.md) and it is " +
	"offered read-only at /deps"

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
	for i := 0; i < len(networkErrors) && !w.networkError; i++ {
		w.networkError = bytes.Contains(line, networkErrors[i])
	}
	out := make([]byte, 0, len(w.prefix)+len(line))
	out = append(append(out, w.prefix...), line...)
	overTask := *w.written+int64(len(out)) > maxTaskLog
	if overTask || w.log.stepBytes.Add(int64(len(out))) > maxBuildLog {
		if !w.truncated {
			w.truncated = true
			note := []byte(fmt.Sprintf("%s[ssf] log truncated at %d bytes; the step's further output is discarded\n", w.prefix, maxTaskLog))
			if !overTask {
				note = []byte(fmt.Sprintf("%s[ssf] log truncated: the build's logs reached %d bytes; the step's further output is discarded\n", w.prefix, maxBuildLog))
			}
			w.log.write(note)
			w.file.Write(note)
			*w.written += int64(len(note)) // the history's per-step offsets count every byte of the log
		}
		return
	}
	*w.written += int64(len(out))
	w.log.write(terminalSafe(out))
	w.file.Write(out)
}

// maxTaskLog bounds the log a task may write, so a step cannot fill the disk through its output.
const maxTaskLog = 64 << 20

// maxBuildLog bounds the logs of a build's tasks together: a pipeline may declare thousands of tasks, and each
// task's log is kept twice (the build's history and OUT/attestations/logs).
const maxBuildLog = 256 << 20

func (l *lineLog) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(p)
}

// terminalSafe replaces control characters other than tab and the final newline, so a step cannot move the
// cursor, clear the screen or forge ssf's own lines on the user's terminal. That covers the C0 controls and DEL,
// the C1 controls (U+0080-U+009F: xterm and others take U+009B as CSI even when it is UTF-8 encoded), and bytes
// that are not UTF-8 (a lone 0x9B is CSI on a terminal that is not in UTF-8 mode). The task's log keeps the raw
// bytes.
func terminalSafe(line []byte) []byte {
	var out []byte
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRune(line[i:])
		bad := r < 0x20 && r != '\t' && !(r == '\n' && i == len(line)-1) || r == 0x7f ||
			0x80 <= r && r <= 0x9f || r == utf8.RuneError && size == 1 ||
			unicode.Is(unicode.Cf, r) // bidi overrides and isolates reorder what the terminal shows
		if bad && out == nil {
			out = append(make([]byte, 0, len(line)+8), line[:i]...)
		}
		switch {
		case bad && (r < 0x80 || r == utf8.RuneError):
			out = fmt.Appendf(out, "\\x%02x", line[i]) // the byte itself
		case bad:
			out = fmt.Appendf(out, "\\u%04x", r)
		case out != nil:
			out = append(out, line[i:i+size]...)
		}
		i += size
	}
	if out == nil {
		return line
	}
	return out
}
