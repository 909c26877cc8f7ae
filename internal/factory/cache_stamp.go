package factory

// Skipping the write-back of a cache a task left as it got it.
//
// Writing a cache back reads its whole copy (walk, read, hash, write a temporary stream): about half a second for
// the Go build cache of examples/hello, on every build, although a warm build only reads it. So right after a
// cache is extracted for a task, its copy's metadata is stamped (treeStamp), and after the task it is stamped
// again: when the two stamps are the same, the copy is taken to hold what the task got, and the stored stream (the
// one the task got, whose digest the provenance records) is kept as it is, without reading the copy.
//
// Why this is safe. The stamp of every entry holds its path, type and mode, owner, size, mtime, inode, link count
// and ctime. A task can set an mtime (utimes), but not a ctime: every write, chmod, chown, rename, link or utimes
// sets the entry's ctime to the current time, and no task can set the clock. A task that rewrote a file keeping its
// size and mtime therefore still changed its ctime, and its copy is stored in full as before. Should a change ever
// go unseen anyway (the clock stepped back by exactly the time since the extraction, or a coarse timestamp that
// did not tick between the extraction and the write, which is impossible here as a container takes far longer to
// start than a tick), the task only loses its change: the store keeps the stream the task was given, and the next
// task gets that stream, hashed as it is extracted, which is the digest its provenance records. Nothing the task
// wrote is kept, followed or trusted by the shortcut; it only ever decides between "store the copy as before" and
// "keep what was stored".
//
// The walk goes through an os.Root of the copy, so no symlink a task left is followed, and it reads only
// metadata, never a file's content. The second walk stops at the first entry past the first walk's count, or at a
// path longer than maxCachePath, so a task that made a huge or deep tree costs no more than the tree it was given
// before the full store (with its own bounds) takes over.

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"syscall"
)

var errStampBound = errors.New("tree past the stamp's bounds")

// treeStamp is a digest of the metadata of every entry of a tree, and how many entries it has.
type treeStamp struct {
	sum     [sha256.Size]byte
	entries int
}

// stampTree stamps the tree at dir, walking at most limit entries; ok is false past the limit, past a path of
// maxCachePath bytes, or on any error (an unreadable tree is never taken to be unchanged).
func stampTree(dir string, limit int) (st treeStamp, ok bool) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, false
	}
	defer root.Close()
	h := sha256.New()
	var buf []byte
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if st.entries++; st.entries > limit || len(rel) > maxCachePath {
			return errStampBound
		}
		fi, err := d.Info() // lstat (fstatat with AT_SYMLINK_NOFOLLOW under the root): a symlink is not followed
		if err != nil {
			return err
		}
		sys, isStat := fi.Sys().(*syscall.Stat_t)
		if !isStat {
			return fs.ErrInvalid
		}
		buf = binary.BigEndian.AppendUint64(buf[:0], uint64(len(rel)))
		buf = append(buf, rel...)
		for _, v := range []uint64{uint64(sys.Mode), uint64(sys.Uid), uint64(sys.Gid), uint64(sys.Size),
			uint64(sys.Mtim.Sec), uint64(sys.Mtim.Nsec), uint64(sys.Ctim.Sec), uint64(sys.Ctim.Nsec),
			sys.Ino, uint64(sys.Dev), uint64(sys.Nlink)} {
			buf = binary.BigEndian.AppendUint64(buf, v)
		}
		h.Write(buf)
		return nil
	})
	if err != nil {
		return treeStamp{}, false
	}
	h.Sum(st.sum[:0])
	return st, true
}

// stamp records the stamp of a cache's copy as the task is given it (after its owner and mode are set).
func (c *caches) stamp(k CacheKey, copyDir string) {
	st, ok := stampTree(copyDir, c.maxEntries()+1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stamps == nil {
		c.stamps = map[string]treeStamp{}
	}
	if ok {
		c.stamps[k.hex()] = st
	} else {
		delete(c.stamps, k.hex())
	}
}

// untouched reports whether the copy of cache k is, by its stamp, as the task got it from a warm cache.
func (c *caches) untouched(k CacheKey, copyDir string) bool {
	c.mu.Lock()
	before, stamped := c.stamps[k.hex()]
	_, warm := c.given[k.hex()]
	c.mu.Unlock()
	if !stamped || !warm {
		return false
	}
	after, ok := stampTree(copyDir, before.entries)
	return ok && after == before
}
