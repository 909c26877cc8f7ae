package factory

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A concurrent build's sweep that runs at the worst moment — after a starting build created its record and before
// it locked it — must neither take nor delete that record: the record must exist, be locked and name the build.
func TestRunRecordSurvivesConcurrentSweep(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	swept := false
	runRecordCreated = func() {
		swept = true
		h.sweepLeftovers(context.Background(), nil, &lineLog{w: io.Discard})
	}
	t.Cleanup(func() { runRecordCreated = nil })

	work := filepath.Join(t.TempDir(), "ssf-build-1")
	run, err := h.lockRun(runRecord{Invocation: "inv-1", Work: work})
	if err != nil {
		t.Fatal(err)
	}
	defer run.release()
	if !swept {
		t.Fatal("the hook did not run")
	}
	path := filepath.Join(h.runsDir(), "inv-1.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the record is gone after a concurrent sweep: %v", err)
	}
	var rec runRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Invocation != "inv-1" || rec.Work != work {
		t.Errorf("record = %q (%v)", data, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		t.Error("the record is not locked by its build")
	}
	// A second sweep, as the next build would run, leaves the running build's record alone.
	h.sweepLeftovers(context.Background(), nil, &lineLog{w: io.Discard})
	if _, err := os.Stat(path); err != nil {
		t.Errorf("a sweep removed a running build's record: %v", err)
	}
	entries, _ := os.ReadDir(h.runsDir())
	if len(entries) != 1 {
		t.Errorf("runs/ holds %v, want only the record", entries)
	}
	run.release()
	if entries, _ := os.ReadDir(h.runsDir()); len(entries) != 0 {
		t.Errorf("after release runs/ holds %v", entries)
	}
}
