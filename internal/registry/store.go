package registry

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ssf-dev/ssf/internal/durable"
)

// store lays the registry's files out on disk and owns the order in which they become durable: every write
// that a handler acknowledges is one store method (putManifest, commitUpload, appendUpload, mountBlob, ...) that
// returns only once it is on stable storage, through internal/durable. Every path it builds comes from validated
// names, tags and digests (see names.go), so none can leave dir.
type store struct {
	dir string
	// repoLocks serialise the changes to a repository's manifests and tags (putManifest, deleteManifest), one
	// stripe per hash of the repository's name: deleting a manifest reads each tag and then removes it, and
	// without the lock a tag a concurrent PUT had just pointed at another manifest (and acknowledged) was
	// removed, as was the link of the same manifest pushed again while it was being deleted.
	repoLocks [64]sync.Mutex
}

// lockRepo takes repository name's lock and returns the function that releases it.
func (s *store) lockRepo(name string) func() {
	h := fnv.New32a()
	h.Write([]byte(name))
	m := &s.repoLocks[h.Sum32()%uint32(len(s.repoLocks))]
	if !m.TryLock() {
		testHookRepoLockWait()
		m.Lock()
	}
	return m.Unlock
}

// testHookRepoLockWait runs when lockRepo has to wait; tests replace it to learn that a request is held back.
var testHookRepoLockWait = func() {}

func (s *store) blobPath(d digest) string { return filepath.Join(s.dir, "blobs", d.alg, d.hex) }
func (s *store) uploadsDir() string       { return filepath.Join(s.dir, "uploads") }
func (s *store) uploadDir(id string) string {
	return filepath.Join(s.uploadsDir(), id)
}
func (s *store) reposDir() string { return filepath.Join(s.dir, "repos") }
func (s *store) repoDir(name string) string {
	return filepath.Join(s.reposDir(), filepath.FromSlash(name))
}
func (s *store) blobLink(name string, d digest) string {
	return filepath.Join(s.repoDir(name), "_blobs", d.alg, d.hex)
}
func (s *store) manifestLink(name string, d digest) string {
	return filepath.Join(s.repoDir(name), "_manifests", d.alg, d.hex)
}
func (s *store) tagsDir(name string) string { return filepath.Join(s.repoDir(name), "_tags") }
func (s *store) tagPath(name, tag string) string {
	return filepath.Join(s.tagsDir(name), tag)
}
func (s *store) referrersDir(name string, subject digest) string {
	return filepath.Join(s.repoDir(name), "_referrers", subject.alg, subject.hex)
}
func (s *store) referrerPath(name string, subject, d digest) string {
	return filepath.Join(s.referrersDir(name, subject), d.alg+"-"+d.hex)
}
func (s *store) lockPath() string { return filepath.Join(s.dir, "gc.lock") }

func (s *store) init() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, "blobs", "sha256"), filepath.Join(s.dir, "blobs", "sha512"),
		s.uploadsDir(), s.reposDir()} {
		if err := durable.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating registry directory %q: %w", d, err)
		}
	}
	return nil
}

// exists reports whether path is a regular file.
func exists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// blobSize returns the size of a stored blob, or an error wrapping fs.ErrNotExist.
func (s *store) blobSize(d digest) (int64, error) {
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// repoHasBlob reports whether the repository links the blob and the blob's bytes are present.
func (s *store) repoHasBlob(name string, d digest) bool {
	return exists(s.blobLink(name, d)) && exists(s.blobPath(d))
}

// writeLink writes a small file under repos/ (a link, a tag, a referrer record), replacing any there: its
// directory (and any parent it needs) is created durably, and the file is written with [durable.Replace].
func writeLink(ctx context.Context, path string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := durable.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return durable.Replace(path, data, 0o600)
}

// commitBlob makes the finished, verified file tmpPath durable as the blob d ([durable.LinkNew]). When the blob
// is already stored the file is left for the caller to drop: the bytes are the same, because both hash to d.
func (s *store) commitBlob(tmpPath string, d digest) error {
	dst := s.blobPath(d)
	if exists(dst) {
		return settled(dst)
	}
	if err := durable.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := durable.LinkNew(tmpPath, dst); errors.Is(err, fs.ErrExist) {
		return settled(dst)
	} else if err != nil {
		return fmt.Errorf("storing blob %s: %w", d, err)
	}
	return nil
}

// settled makes durable the name path that another request created, and which this one is about to
// acknowledge: that request may have made the name (after syncing its data) and not yet synced its directory,
// and a crash then lost a blob or link acknowledged by the second request.
func settled(path string) error {
	return syncDir(filepath.Dir(path))
}

// syncDir is durable.SyncDir; tests replace it to see which directories are synced.
var syncDir = durable.SyncDir

// putBlobBytes stores small content (a manifest) under its digest.
func (s *store) putBlobBytes(ctx context.Context, d digest, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if exists(s.blobPath(d)) {
		return settled(s.blobPath(d))
	}
	if err := durable.WriteNew(s.blobPath(d), data, 0o600); errors.Is(err, fs.ErrExist) {
		return settled(s.blobPath(d))
	} else if err != nil {
		return fmt.Errorf("storing blob %s: %w", d, err)
	}
	return nil
}

// linkBlob records durably that the repository holds the stored blob d, and refreshes the blob's time so a
// concurrent GC's grace period counts from now. The caller holds the shared lock.
func (s *store) linkBlob(name string, d digest) error {
	now := time.Now()
	if err := os.Chtimes(s.blobPath(d), now, now); err != nil {
		return err
	}
	link := s.blobLink(name, d)
	if exists(link) {
		return settled(link)
	}
	if err := durable.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return err
	}
	if err := durable.WriteNew(link, nil, 0o600); errors.Is(err, fs.ErrExist) {
		return settled(link)
	} else if err != nil {
		return err
	}
	return nil
}

// mountBlob links the stored blob d into repository name, unless GC removed it first; it reports whether it did.
func (s *store) mountBlob(name string, d digest) (bool, error) {
	l, err := s.lock(false)
	if err != nil {
		return false, err
	}
	defer l.unlock()
	if !exists(s.blobPath(d)) {
		return false, nil
	}
	return true, s.linkBlob(name, d)
}

// unlinkBlob removes, durably, the repository's link to blob d: other repositories keep the bytes, and GC
// removes them once nothing links or references them. It fails with fs.ErrNotExist when there is no link.
func (s *store) unlinkBlob(name string, d digest) error {
	return durable.Remove(s.blobLink(name, d))
}

// removeBlobs removes the stored blobs ds, durably, for GC (which holds the exclusive lock). A crash part-way
// leaves repository links to missing blobs, which readers already treat as absent (they check the blob too) and
// the next GC removes.
func (s *store) removeBlobs(ds []digest) error {
	dirs := map[string]bool{}
	for _, d := range ds {
		if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(s.blobPath(d))] = true
	}
	return syncDirs(dirs)
}

// unlinkBlobs removes repository name's links to the blobs ds, durably.
func (s *store) unlinkBlobs(name string, ds []digest) error {
	dirs := map[string]bool{}
	for _, d := range ds {
		if err := os.Remove(s.blobLink(name, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(s.blobLink(name, d))] = true
	}
	return syncDirs(dirs)
}

// syncDirs syncs each directory once, however many names were removed from it.
func syncDirs(dirs map[string]bool) error {
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := durable.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// listDigests lists the digests named by the files dir/<alg>/<hex>, skipping anything that is not one (such as
// temporary files).
func listDigests(dir string) ([]digest, error) {
	var out []digest
	for _, alg := range []string{"sha256", "sha512"} {
		entries, err := os.ReadDir(filepath.Join(dir, alg))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if d, err := parseDigest(alg + ":" + e.Name()); err == nil && e.Type().IsRegular() {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// listRepos returns every repository name that has a link directory.
func (s *store) listRepos() ([]string, error) {
	var repos []string
	root := s.reposDir()
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() || path == root {
			return nil
		}
		if strings.HasPrefix(e.Name(), "_") {
			if e.Name() == "_blobs" || e.Name() == "_manifests" {
				rel, err := filepath.Rel(root, filepath.Dir(path))
				if err != nil {
					return err
				}
				name := filepath.ToSlash(rel)
				if validName(name) && (len(repos) == 0 || repos[len(repos)-1] != name) {
					repos = append(repos, name)
				}
			}
			return fs.SkipDir
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	slices.Sort(repos)
	return slices.Compact(repos), err
}

// fileLock is an advisory lock on the registry's gc.lock file: writers hold it shared, GC exclusive, so a GC
// in another process (ssf registry gc) never sweeps while a blob or manifest is being linked.
type fileLock struct{ f *os.File }

func (s *store) lock(exclusive bool) (*fileLock, error) {
	f, err := os.OpenFile(s.lockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %q: %w", s.lockPath(), err)
	}
	return &fileLock{f}, nil
}

func (l *fileLock) unlock() { l.f.Close() }
