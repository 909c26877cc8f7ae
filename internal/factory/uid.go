package factory

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Each running build's steps run as a host uid (and gid) of their own, so concurrent builds share no per-user
// kernel resources (inotify instances, pipe buffers, process counts) and cannot signal each other's processes.
// A uid is taken by locking $SSF_HOME/uids/<uid>; the kernel drops the lock when the build's process ends, however
// it ends, so a killed build never keeps its uid.
const (
	FirstTaskUID = 100000
	TaskUIDs     = 1000
)

// taskUID is a uid held for one build.
type taskUID struct {
	id int
	f  *os.File
}

// takeUID locks the first free uid of the range.
func (h Home) takeUID() (*taskUID, error) {
	dir := filepath.Join(h.Dir, "uids")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for id := FirstTaskUID; id < FirstTaskUID+TaskUIDs; id++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(id)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			return &taskUID{id: id, f: f}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("all %d task uids (%d-%d) are in use by running builds", TaskUIDs, FirstTaskUID, FirstTaskUID+TaskUIDs-1)
}

func (u *taskUID) release() { u.f.Close() }
