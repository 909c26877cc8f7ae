package factory

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// countingWriter counts what it is given, so a test can write hundreds of MiB of log without keeping them.
type countingWriter struct {
	n    int64
	tail []byte
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.tail = append(c.tail, p...)
	if len(c.tail) > 4096 {
		c.tail = append([]byte(nil), c.tail[len(c.tail)-4096:]...)
	}
	return len(p), nil
}

// TestBuildLogBounded: the bound on a task's log is no bound on a build's, whose pipeline may declare thousands of
// tasks. Each task here stays under its own bound, yet the build's logs together stop at maxBuildLog, and the task
// that met it says so in its log.
func TestBuildLogBounded(t *testing.T) {
	log := &lineLog{w: io.Discard}
	line := append(bytes.Repeat([]byte("A"), 1<<20-1), '\n')
	var total int64
	var last *countingWriter
	tasks := int(maxBuildLog/(maxTaskLog/2)) + 3
	for i := 0; i < tasks; i++ {
		var logged int64
		file := &countingWriter{}
		w := log.prefixed(fmt.Sprintf("[t%d/s] ", i), file, &logged)
		for written := int64(0); written < maxTaskLog/2; written += int64(len(line)) {
			w.Write(line)
		}
		w.Flush()
		if logged != file.n {
			t.Fatalf("task %d: the step offsets count %d bytes, its log has %d", i, logged, file.n)
		}
		total += file.n
		last = file
	}
	if total > maxBuildLog+int64(tasks)*1024 {
		t.Fatalf("%d tasks logged %d bytes in all, more than the build's bound of %d", tasks, total, maxBuildLog)
	}
	if !bytes.Contains(last.tail, []byte("the build's logs reached")) {
		t.Fatalf("the last task's log does not say it was cut short: %q", last.tail)
	}
}
