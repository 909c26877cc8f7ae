package factory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/sandbox"
)

// A running build holds an exclusive lock on $SSF_HOME/runs/<invocation>.json, which names its temporary
// directories. A build killed outright (SIGKILL, power loss) cannot clean up after itself; the next build finds its
// record unlocked and removes what it left: containers, the work directory and the staging directory.
//
// A record is never visible unlocked while its build lives: it is created under a temporary name that sweeps
// ignore, locked, written and synced, and only then renamed to <invocation>.json (the lock belongs to the open file,
// so it survives the rename). Were it created under its final name and locked afterwards, a concurrent build's
// sweep could lock it in between, find it empty, and delete it; the build would then run with no record, and a
// later kill -9 of it would leave its containers and directories behind for good.

// runRecord is what a build's lock file says about it.
type runRecord struct {
	Invocation string `json:"invocation"`
	Work       string `json:"work"`
	Staging    string `json:"staging,omitempty"`
}

func (h Home) runsDir() string { return h.layout().Runs() }

// runLock is a running build's record, locked for as long as the build runs.
type runLock struct {
	f    *os.File
	path string // the record's visible name
	rec  runRecord
}

// runRecordCreated, when set by a test, runs after a record's file is created and before it is locked: the moment
// a concurrent sweep must not be able to take it.
var runRecordCreated func()

// lockRun creates, locks and writes the record of a starting build, and only then gives it its visible name.
func (h Home) lockRun(rec runRecord) (*runLock, error) {
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(h.runsDir(), rec.Invocation+".json")
	tmp := filepath.Join(h.runsDir(), "."+rec.Invocation+".json.tmp") // not *.json: sweeps never look at it
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*runLock, error) {
		os.Remove(tmp)
		f.Close()
		return nil, err
	}
	if runRecordCreated != nil {
		runRecordCreated()
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fail(err)
	}
	l := &runLock{f: f, path: path, rec: rec}
	if err := l.update(func(*runRecord) {}); err != nil {
		return fail(err)
	}
	// The final name must not exist (invocation ids are random): a hard link would refuse it, but the rename is
	// what keeps the lock and the name on one inode with no unlocked moment.
	if _, err := os.Lstat(path); err == nil {
		return fail(fmt.Errorf("run record %q already exists", path))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := durable.SyncDir(h.runsDir()); err != nil {
		os.Remove(path)
		f.Close()
		return nil, err
	}
	return l, nil
}

// update changes the record and writes it through to disk.
func (l *runLock) update(change func(*runRecord)) error {
	change(&l.rec)
	data, err := json.Marshal(l.rec)
	if err != nil {
		return err
	}
	// Written over the old record and then cut to length, so the record is never empty, even after a crash.
	if _, err := l.f.WriteAt(data, 0); err != nil {
		return err
	}
	if err := l.f.Truncate(int64(len(data))); err != nil {
		return err
	}
	return durable.Sync(l.f)
}

// release removes the record of a build that cleaned up after itself.
func (l *runLock) release() {
	os.Remove(l.path)
	l.f.Close()
}

// sweepLeftovers removes what builds that died without cleaning up left behind, and says so in the log. Records
// that are still locked belong to running builds and are left alone.
func (h Home) sweepLeftovers(ctx context.Context, runtime Runtime, log *lineLog) {
	entries, err := os.ReadDir(h.runsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		invocation, starting := recordName(e.Name())
		if invocation == "" {
			continue
		}
		path := filepath.Join(h.runsDir(), e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // a running build
			continue
		}
		// The lock is on the file we opened; if the name has since gone to another file (or none), leave it.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
		if len(data) == 0 {
			// A record under its final name is written before it gets that name and never cut short, so an empty
			// one is damage (or an older ssf's) and names nothing to clean. An empty temporary one may be a
			// starting build's in the moment before it takes its lock: left alone unless it is old.
			if fi, err := f.Stat(); !starting || err == nil && time.Since(fi.ModTime()) > staleRecord {
				os.Remove(path)
			}
			f.Close()
			continue
		}
		// A written temporary record that is not locked belongs to a build that died before naming it.
		var rec runRecord
		if json.Unmarshal(data, &rec) == nil && rec.Invocation == invocation && isInvocationID(invocation) {
			h.salvage(rec, log) // its logs into the build history, before its work directory goes
			if err := cleanRun(ctx, runtime, rec); err != nil {
				log.printf("could not remove the leftovers of interrupted build %s: %v", rec.Invocation, err)
				f.Close()
				continue
			}
			log.printf("removed the leftovers of interrupted build %s", rec.Invocation)
		}
		os.Remove(path)
		f.Close()
	}
}

// isInvocationID reports whether s has the form newInvocationID gives (a UUID), so a damaged record cannot make
// cleanRun name containers by anything else.
func isInvocationID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f'):
			return false
		}
	}
	return true
}

// staleRecord is how long an empty, unlocked temporary record may stay: far longer than the few system calls between
// its creation and its lock.
const staleRecord = time.Hour

// recordName returns the invocation a file name in runs/ records, and whether it is a temporary record (of a build
// that was starting); "" for any other name.
func recordName(name string) (invocation string, starting bool) {
	if inv, ok := strings.CutSuffix(name, ".json"); ok && !strings.HasPrefix(inv, ".") {
		return inv, false
	}
	if inv, ok := strings.CutSuffix(name, ".json.tmp"); ok && strings.HasPrefix(inv, ".") && len(inv) > 1 {
		return inv[1:], true
	}
	return "", false
}

// samePath reports whether path still names the file f has open.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// cleanRun deletes an interrupted build's containers and directories. It only removes directories that have the
// names ssf gives them, so a damaged record cannot point it at anything else.
func cleanRun(ctx context.Context, runtime Runtime, rec runRecord) error {
	ids, err := runtime.List(ctx)
	if err != nil {
		return err
	}
	prefix := containerID(rec.Invocation, "")
	var errs []error
	for _, id := range ids {
		if strings.HasPrefix(id, prefix) {
			errs = append(errs, runtime.Delete(ctx, id))
		}
	}
	if rec.Work != "" && strings.HasPrefix(filepath.Base(rec.Work), "ssf-build-") && ownDir(rec.Work) {
		errs = append(errs, sandbox.UnmountUnder(rec.Work)) // the task disks, before their mount points go
		errs = append(errs, os.RemoveAll(rec.Work))
	}
	if rec.Staging != "" && strings.Contains(filepath.Base(rec.Staging), ".partial-") && ownDir(rec.Staging) {
		errs = append(errs, os.RemoveAll(rec.Staging))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("build %s: %w", rec.Invocation, err)
	}
	return nil
}

// ownDir reports whether path is a directory a build of this factory made: absolute, reached without any symlink
// (RemoveAll would follow one in a parent), owned by the user ssf runs as and writable by nobody else. A record
// names what the sweep deletes as root, so it must not be able to point anywhere else.
func ownDir(path string) bool {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	if real, err := filepath.EvalSymlinks(path); err != nil || real != path {
		return false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
