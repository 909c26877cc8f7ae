package factory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ssf-dev/ssf/internal/sandbox"
)

// A running build holds an exclusive lock on $SSF_HOME/runs/<invocation>.json, which names its temporary
// directories. A build killed outright (SIGKILL, power loss) cannot clean up after itself; the next build finds its
// record unlocked and removes what it left: containers, the work directory and the staging directory.

// runRecord is what a build's lock file says about it.
type runRecord struct {
	Invocation string `json:"invocation"`
	Work       string `json:"work"`
	Staging    string `json:"staging,omitempty"`
}

func (h Home) runsDir() string { return filepath.Join(h.Dir, "runs") }

// runLock is a running build's record, locked for as long as the build runs.
type runLock struct {
	f   *os.File
	rec runRecord
}

// lockRun creates and locks the record of a starting build.
func (h Home) lockRun(rec runRecord) (*runLock, error) {
	if err := os.MkdirAll(h.runsDir(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(h.runsDir(), rec.Invocation+".json"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	l := &runLock{f: f, rec: rec}
	return l, l.update(func(*runRecord) {})
}

// update changes the record and writes it through to disk.
func (l *runLock) update(change func(*runRecord)) error {
	change(&l.rec)
	data, err := json.Marshal(l.rec)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(data, 0); err != nil {
		return err
	}
	return l.f.Sync()
}

// release removes the record of a build that cleaned up after itself.
func (l *runLock) release() {
	os.Remove(l.f.Name())
	l.f.Close()
}

// sweepLeftovers removes what builds that died without cleaning up left behind, and says so in the log. Records
// that are still locked belong to running builds and are left alone.
func (h Home) sweepLeftovers(ctx context.Context, runtime *sandbox.Runc, log *lineLog) {
	entries, err := os.ReadDir(h.runsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
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
		var rec runRecord
		data, _ := os.ReadFile(path)
		if json.Unmarshal(data, &rec) == nil && rec.Invocation+".json" == e.Name() {
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

// cleanRun deletes an interrupted build's containers and directories. It only removes directories that have the
// names ssf gives them, so a damaged record cannot point it at anything else.
func cleanRun(ctx context.Context, runtime *sandbox.Runc, rec runRecord) error {
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
	if rec.Work != "" && strings.HasPrefix(filepath.Base(rec.Work), "ssf-build-") {
		errs = append(errs, sandbox.UnmountUnder(rec.Work)) // the task disks, before their mount points go
		errs = append(errs, os.RemoveAll(rec.Work))
	}
	if rec.Staging != "" && strings.Contains(filepath.Base(rec.Staging), ".partial-") {
		errs = append(errs, os.RemoveAll(rec.Staging))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("build %s: %w", rec.Invocation, err)
	}
	return nil
}
