package factory

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ssf-dev/ssf/internal/sandbox"
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

// A damaged record with an invocation of another form names nothing to clean, and never panics the sweep.
func TestSweepDamagedRecord(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "ssf-build-8")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(runRecord{Invocation: "x", Work: work})
	if err := os.WriteFile(filepath.Join(h.runsDir(), "x.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	h.sweepLeftovers(context.Background(), nil, &lineLog{w: io.Discard})
	if entries, _ := os.ReadDir(h.runsDir()); len(entries) != 0 {
		t.Errorf("runs/ holds %v", entries)
	}
	if _, err := os.Stat(work); err != nil {
		t.Errorf("a damaged record's directory was removed: %v", err)
	}
}

// A build killed after writing its temporary record but before naming it leaves a written, unlocked temporary
// record: the next sweep cleans what it names. An empty temporary record is left alone while it is fresh (a
// starting build is about to lock it) and removed once stale.
func TestSweepTemporaryRecords(t *testing.T) {
	rc, err := sandbox.NewRunc("runc", filepath.Join(t.TempDir(), "runc"))
	if err != nil {
		t.Skip(err)
	}
	h := Home{Dir: t.TempDir()}
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "ssf-build-7")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	dead := newInvocationID()
	data, _ := json.Marshal(runRecord{Invocation: dead, Work: work})
	for name, body := range map[string][]byte{"." + dead + ".json.tmp": data, ".fresh.json.tmp": nil, ".stale.json.tmp": nil} {
		if err := os.WriteFile(filepath.Join(h.runsDir(), name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleRecord)
	if err := os.Chtimes(filepath.Join(h.runsDir(), ".stale.json.tmp"), old, old); err != nil {
		t.Fatal(err)
	}
	h.sweepLeftovers(context.Background(), runc{rc}, &lineLog{w: io.Discard})
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("the dead build's work directory is still there: %v", err)
	}
	var left []string
	entries, _ := os.ReadDir(h.runsDir())
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{".fresh.json.tmp"}) {
		t.Errorf("runs/ holds %q, want only the fresh empty record", left)
	}
}

// A record names what the sweep deletes as root. One whose directories are reached through a symlink, or are
// writable by others, is not followed: the sweep drops the record and deletes nothing.
func TestSweepOnlyDeletesItsOwnDirectories(t *testing.T) {
	rc, err := sandbox.NewRunc("runc", filepath.Join(t.TempDir(), "runc"))
	if err != nil {
		t.Skip(err)
	}
	h := Home{Dir: t.TempDir()}
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	victim, tmp := t.TempDir(), t.TempDir()
	for _, d := range []string{"ssf-build-1", "out.partial-1"} {
		if err := os.Mkdir(filepath.Join(victim, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(tmp, "ssf-build-2")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	records := []runRecord{
		{Invocation: newInvocationID(), Work: filepath.Join(tmp, "link", "ssf-build-1"), Staging: filepath.Join(tmp, "link", "out.partial-1")},
		{Invocation: newInvocationID(), Work: open},
	}
	for _, rec := range records {
		data, _ := json.Marshal(rec)
		if err := os.WriteFile(filepath.Join(h.runsDir(), rec.Invocation+".json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.sweepLeftovers(context.Background(), runc{rc}, &lineLog{w: io.Discard})
	for _, d := range []string{filepath.Join(victim, "ssf-build-1"), filepath.Join(victim, "out.partial-1"), open} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("the sweep deleted %s, which a record named through a symlink or which others may write: %v", d, err)
		}
	}
}
