package factory

// Task caches (docs/caches.md): a directory a task declares (`caches: [{name, path}]`) that the next build of the
// same pipeline's task finds as this one left it.
//
// A cache is stored as one deterministic tar stream ($SSF_HOME/cache/tasks/<key>/cache.tar, written by
// archive.WriteTree), never as a tree: the control plane only ever reads a task's tree through WriteTree (which
// follows no symlink, skips fifos, sockets and devices and drops setuid and setgid bits) and only ever writes one
// through archive.Extract (which creates nothing outside its destination). So a hostile task can plant links,
// fifos or setuid files in its cache, and none of them is followed, opened, hashed or kept.
//
// Before a task starts, its cache is extracted onto the task's own size-limited disk (so the cache counts against
// maxDiskBytes while the task runs, and cannot fill the host), owned by the build's leased uid, and bind-mounted
// read-write at the declared path. The digest recorded in the provenance is the sha256 of the tar stream as it was
// extracted for this task: the bytes the task was given, hashed as they were given, not a digest trusted from an
// earlier run. After the task succeeded and its container is gone (nothing can write the copy any more), the copy
// is written back as a new tar stream, bounded by maxCacheBytes, and replaces the stored one with one rename;
// a copy whose metadata shows it untouched is not read at all, the stored stream is kept (cache_stamp.go).
//
// Concurrency: each build works on its own copy, so two builds of one pipeline never share a directory. The store
// is replaced whole, under an flock of the cache's directory, by a rename of a synced file: the last build to
// finish wins, and no build ever sees half of another's cache. Neither waits for the other.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sandbox"
)

// DefaultMaxCacheBytes bounds one cache (its tar stream) when config.yaml sets no maxCacheBytes.
const DefaultMaxCacheBytes int64 = 2 << 30

// maxCacheEntries bounds the files, directories and links of one cache. maxCacheBytes alone allows 4 million
// empty files (a 512-byte header each): storing them holds every entry in the control plane's memory (about
// 600 bytes each, 2.5 GB) and extracting them takes minutes, on every build. A Go build cache of a large project
// holds tens of thousands.
const maxCacheEntries = 250_000

// maxCachePath bounds one entry's path in a cache, and maxCachePathBytes all of them together. The walk that
// stores a cache keeps every entry's path, and one open directory per level: a chain of 20,000 nested
// directories (a step makes it with renames, whatever PATH_MAX says) cost the control plane 1.2 GB of paths and
// 20,000 descriptors, and its paths grow with the square of the depth. 4096 bytes is PATH_MAX: no tool in the
// task could name a longer one.
const (
	maxCachePath      = 4096
	maxCachePathBytes = 64 << 20
)

// EmptyCacheDigest is the digest of an empty cache: an empty directory's tar stream (the two zero blocks that end
// a tar archive).
var EmptyCacheDigest = digest.FromBytes(make([]byte, 1024))

// CacheMediaType is the media type of a cache's resolvedDependencies entry: its digest is of a tar stream.
const CacheMediaType = "application/x-tar"

// Cache states, in a cache's resolvedDependencies entry (annotation "state").
const (
	CacheWarm     = "warm"     // the task got what an earlier build of its pipeline left
	CacheEmpty    = "empty"    // nothing was stored yet (or what was stored was unusable): the task got an empty directory
	CacheDisabled = "disabled" // ssf build --no-cache: an empty directory, not kept
)

const (
	cacheTarName    = "cache.tar"
	cacheRecordName = "record.json"
	cacheLockName   = "lock"
	maxCacheRecord  = 64 << 10
)

// CacheRecord describes a stored cache (record.json beside its cache.tar), for `ssf cache list`.
type CacheRecord struct {
	Key string `json:"key"` // hex sha256 of the cache's identity (CacheKey); its directory's name
	CacheKey
	Digest   digest.Digest `json:"digest"`   // of cache.tar
	Bytes    int64         `json:"bytes"`    // size of cache.tar
	LastUsed time.Time     `json:"lastUsed"` // when a build last finished with it
	// Invocation is the build that last finished with it; StoredBy the one that wrote the stream it holds (a build
	// that changed nothing leaves the stream, and StoredBy, as they were).
	Invocation string `json:"invocation"`
	StoredBy   string `json:"storedBy"`
}

// CacheKey is what identifies a cache. A pipeline is identified by its name together with where its file and its
// source are on this host, all three: a name alone is chosen by whoever writes a pipeline, so an unrelated project
// that calls its pipeline "hello" would otherwise write the cache a trusted "hello" reads (cache poisoning). With
// the locations in the key, only builds from the same pipeline file over the same source directory share a
// cache; the factory home is implicit (the store is under it).
type CacheKey struct {
	Pipeline     string        `json:"pipeline"`     // metadata.name
	PipelineFile string        `json:"pipelineFile"` // absolute, as given (keyPath)
	Source       string        `json:"source"`       // the --source directory, absolute, as given (keyPath)
	Task         string        `json:"task"`
	Cache        string        `json:"cache"`
	Builder      digest.Digest `json:"builder"`
}

func (k CacheKey) hex() string {
	data, _ := json.Marshal(k) // fixed field order: the same key always hashes the same
	sum := sha256.Sum256(append([]byte("ssf task cache v1\n"), data...))
	return hex.EncodeToString(sum[:])
}

// caches is one build's use of task caches.
type caches struct {
	dir     string // $SSF_HOME/cache/tasks
	max     int64  // maxCacheBytes
	entries int    // maxCacheEntries, or fewer in tests
	off     bool   // --no-cache
	base    CacheKey
	uid     int
	rootfs  string
	log     *lineLog
	invocID string
	tasks   []*pipeline.Task // every task of the pipeline: their cache paths are checked before any task runs
	file    string           // the pipeline file, to say where a refused cache path is declared

	checked  sync.Once
	checkErr error

	stores sync.WaitGroup // keepAfter's
	// storeCtx is the stores' context (storeIn): the whole build's, not its run's, so that a run that succeeded
	// does not cancel them when it returns; stopStores cancels them (a run that failed, or wait when done).
	storeCtx   context.Context
	stopStores context.CancelFunc
	mu         sync.Mutex
	used       map[string][]provenance.ResourceDescriptor // task -> its caches as the task got them
	given      map[string]digest.Digest                   // cache key -> the digest of the stored cache a task got
	storedBy   map[string]string                          // cache key -> the invocation that stored what the task got
	stamps     map[string]treeStamp                       // cache key -> its copy's metadata as the task got it (cache_stamp.go)
}

func (h Home) newCaches(adm *admission, rootfs, invocation string, uid int, log *lineLog) *caches {
	return &caches{
		dir: h.layout().TaskCaches(), max: adm.cfg.maxCacheBytes(), entries: maxCacheEntries, off: adm.req.NoCache, rootfs: rootfs,
		uid: uid, log: log, invocID: invocation, tasks: adm.p.Order(), file: adm.p.Path, used: map[string][]provenance.ResourceDescriptor{},
		given: map[string]digest.Digest{}, storedBy: map[string]string{},
		base: CacheKey{Pipeline: adm.p.Name, PipelineFile: keyPath(adm.req.Pipeline), Source: keyPath(adm.req.Source),
			Builder: adm.img.Digest},
	}
}

func (c Config) maxCacheBytes() int64 {
	if c.MaxCacheBytes > 0 {
		return c.MaxCacheBytes
	}
	return DefaultMaxCacheBytes
}

// keyPath is the path a cache key holds for the pipeline file or the source: p made absolute as given, its
// symlinks NOT resolved. Resolving them here would be a second look at the path, after the pipeline was read and
// the source snapshot taken: whoever owns a symlink on the way (say a developer's checkout that root builds with a
// trusted pipeline file) could point it at the trusted source directory between the two, and build their own
// source into the key the trusted builds of that directory read. A path as given names the same key whatever it
// points to; a symlink and its target just keep caches of their own.
func keyPath(p string) string {
	if p == "" {
		p = "."
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}

func (c *caches) key(t *pipeline.Task, name string) CacheKey {
	k := c.base
	k.Task, k.Cache = t.Name, name
	return k
}

// prepare gives a task its caches: each one's stored tar stream extracted into dir/caches/<name> (on the task's
// disk), owned by the build's uid, and the mounts that put them at their declared paths. tmp is the task's /tmp,
// in which mount points under /tmp are made.
func (c *caches) prepare(ctx context.Context, t *pipeline.Task, dir, tmp string) ([]sandbox.Mount, error) {
	if c == nil {
		return nil, nil
	}
	// Every task's cache paths are checked against the builder image when the first task is prepared, before any
	// task runs: a path that is not there is the pipeline's error (exit 2), and finding it only when its task
	// comes would leave the earlier tasks' caches stored by a build that was refused.
	c.checked.Do(func() { c.checkErr = c.checkImagePaths() })
	if c.checkErr != nil {
		return nil, c.checkErr
	}
	if len(t.Caches) == 0 {
		return nil, nil
	}
	base := filepath.Join(dir, "caches")
	if err := os.Mkdir(base, 0o755); err != nil {
		return nil, err
	}
	var mounts []sandbox.Mount
	var used []provenance.ResourceDescriptor
	for _, dc := range t.Caches {
		if err := c.mountPoint(t, dc, tmp); err != nil {
			return nil, err
		}
		copyDir := filepath.Join(base, dc.Name)
		k := c.key(t, dc.Name)
		state, sum, size, err := c.extract(ctx, k, copyDir)
		if err != nil {
			return nil, fmt.Errorf("task %q: cache %q: %w", t.Name, dc.Name, err)
		}
		if err := os.Lchown(copyDir, c.uid, c.uid); err != nil {
			return nil, err
		}
		if err := os.Chmod(copyDir, 0o700); err != nil {
			return nil, err
		}
		if state == CacheWarm {
			c.stamp(k, copyDir) // last, as the task gets it: an unchanged copy is not written back (cache_stamp.go)
		}
		if state == CacheWarm {
			c.log.printf("task %s: cache %s at %s: %d bytes (%s)", t.Name, dc.Name, dc.Path, size, sum)
		}
		mounts = append(mounts, sandbox.Mount{Source: copyDir, Destination: dc.Path})
		used = append(used, provenance.ResourceDescriptor{
			Name:      "cache/" + t.Name + "/" + dc.Name,
			URI:       "ssf-cache:" + k.hex(),
			MediaType: CacheMediaType,
			Digest:    provenance.DigestSet(sum),
			Annotations: map[string]string{
				"task": t.Name, "cache": dc.Name, "path": dc.Path, "state": state, "bytes": fmt.Sprint(size),
			},
		})
		if state == CacheWarm {
			c.mu.Lock()
			used[len(used)-1].Annotations["storedBy"] = c.storedBy[k.hex()]
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	c.used[t.Name] = used
	c.mu.Unlock()
	return mounts, nil
}

// checkImagePaths checks that every cache path outside /tmp, of every task, is a directory in the builder image.
func (c *caches) checkImagePaths() error {
	for _, t := range c.tasks {
		for _, dc := range t.Caches {
			if strings.HasPrefix(dc.Path, "/tmp/") {
				continue
			}
			if err := c.mountPoint(t, dc, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// mountPoint makes sure a cache's path can be mounted on without writing the builder's root file system: a path
// under /tmp gets its directories in the task's own /tmp (owned by the task); any other path must already be a
// directory in the builder image.
func (c *caches) mountPoint(t *pipeline.Task, dc pipeline.Cache, tmp string) error {
	if rel, ok := strings.CutPrefix(dc.Path, "/tmp/"); ok {
		r, err := os.OpenRoot(tmp)
		if err != nil {
			return err
		}
		defer r.Close()
		done := ""
		for part := range strings.SplitSeq(rel, "/") {
			done = path.Join(done, part)
			err := r.Mkdir(done, 0o755)
			if errors.Is(err, fs.ErrExist) {
				// Made for another cache, or by the control plane (the npm cache): it must be a real directory.
				if fi, lerr := r.Lstat(done); lerr == nil && fi.IsDir() {
					continue
				}
			}
			if err != nil {
				return fmt.Errorf("task %q: making the mount point of cache %q: %w", t.Name, dc.Name, err)
			}
			if err := r.Lchown(done, c.uid, c.uid); err != nil {
				return err
			}
		}
		return nil
	}
	r, err := os.OpenRoot(c.rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	rel := strings.TrimPrefix(dc.Path, "/")
	fi, err := r.Lstat(rel)
	if err == nil && fi.IsDir() {
		// Mounted on, a cache hides what the image holds there, and what the task leaves there comes back in the
		// next build: a cache over /usr/local/go or /etc would let one build replace the next build's toolchain
		// or configuration. Only an empty directory hides nothing.
		d, err := r.Open(rel)
		if err != nil {
			return err
		}
		names, _ := d.Readdirnames(1)
		d.Close()
		if len(names) == 0 {
			return nil
		}
		return c.refused(t, dc, fmt.Sprintf("%s holds files of the builder image (%s): a cache there would hide them, and the next build would get what a task left instead:", dc.Path, path.Join(dc.Path, names[0])))
	}
	// Say why, so the fix is clear: a symlink (never mounted on: give the directory it points to), a path through
	// an absolute symlink (such as /var/run -> /run: a mount would land elsewhere than checked), or nothing there.
	why := "is not a directory in the builder image"
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		why = "is a symlink in the builder image, not a directory: give the directory it points to, or"
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		why = "leads through an absolute symlink of the builder image (" + err.Error() + "): give the path it points to, or"
	default:
		why += ":"
	}
	return c.refused(t, dc, dc.Path+" "+why)
}

// refused is the input error for a cache path the builder image does not allow, naming where it is declared.
func (c *caches) refused(t *pipeline.Task, dc pipeline.Cache, why string) error {
	at := ""
	if c.file != "" && dc.Line > 0 {
		at = fmt.Sprintf("%s:%d: ", c.file, dc.Line)
	}
	return &InputError{Err: fmt.Errorf("%stask %q: cache %q: %s choose a path under /tmp (the task's $HOME), such as /tmp/%s, or an empty directory of the image", at, t.Name, dc.Name, why, dc.Name)}
}

// extract fills copyDir with the stored cache of k and returns its state, the digest of the tar stream extracted
// and its size. A cache that cannot be read, or whose bytes are not those recorded, is dropped: the task gets an
// empty directory (a cache is never needed for a build to be right).
func (c *caches) extract(ctx context.Context, k CacheKey, copyDir string) (string, digest.Digest, int64, error) {
	empty := func(state string) (string, digest.Digest, int64, error) {
		if err := os.RemoveAll(copyDir); err != nil {
			return "", "", 0, err
		}
		if err := os.Mkdir(copyDir, 0o700); err != nil {
			return "", "", 0, err
		}
		return state, EmptyCacheDigest, 1024, nil
	}
	if c.off {
		return empty(CacheDisabled)
	}
	kdir := filepath.Join(c.dir, k.hex())
	rec, f, err := openCache(kdir)
	if errors.Is(err, fs.ErrNotExist) {
		return empty(CacheEmpty)
	}
	if err != nil {
		c.log.printf("warning: cache %s of task %s is unreadable and was not used: %v", k.Cache, k.Task, err)
		return empty(CacheEmpty)
	}
	defer f.Close()
	h := sha256.New()
	n := &countWriter{}
	// Buffered: the tar reader reads every 512-byte header on its own, one read of the file each without it. The
	// hash and the count see the bytes as the tar reader takes them, so what the buffer holds ahead is not hashed
	// until it is read, by the tar reader or by the copy of the rest below, which reads the same buffer.
	br := bufio.NewReaderSize(io.LimitReader(f, c.max+1), 256<<10)
	err = archive.Extract(ctx, io.TeeReader(br, io.MultiWriter(h, n)), copyDir, archive.ExtractOptions{Chown: true, UID: c.uid, GID: c.uid})
	if err == nil {
		// Whatever the tar reader left unread (padding after the end blocks) is part of the stream's digest.
		_, err = io.Copy(io.MultiWriter(h, n), br)
	}
	if ctx.Err() != nil {
		return "", "", 0, ctx.Err()
	}
	sum := digest.NewDigest(digest.SHA256, h)
	switch {
	case err != nil:
		c.log.printf("warning: cache %s of task %s could not be extracted and was not used: %v", k.Cache, k.Task, err)
		return empty(CacheEmpty)
	case n.n > c.max:
		c.log.printf("cache %s of task %s is larger than maxCacheBytes (%d) and was not used", k.Cache, k.Task, c.max)
		return empty(CacheEmpty)
	case sum != rec.Digest:
		c.log.printf("warning: cache %s of task %s is not what was stored (%s, recorded %s) and was not used", k.Cache, k.Task, sum, rec.Digest)
		return empty(CacheEmpty)
	}
	c.mu.Lock()
	c.given[k.hex()] = sum // what store compares the task's copy with
	c.storedBy[k.hex()] = rec.StoredBy
	c.mu.Unlock()
	return CacheWarm, sum, n.n, nil
}

// openCache reads a stored cache's record and opens its tar stream, under the cache's lock so the two match.
func openCache(kdir string) (CacheRecord, *os.File, error) {
	var rec CacheRecord
	unlock, err := lockCache(kdir, false)
	if err != nil {
		return rec, nil, err
	}
	defer unlock()
	r, err := os.OpenRoot(kdir)
	if err != nil {
		return rec, nil, err
	}
	defer r.Close()
	if rec, err = readCacheRecord(r); err != nil {
		return rec, nil, err
	}
	f, err := openRegularIn(r, cacheTarName)
	if err != nil {
		return rec, nil, err
	}
	return rec, f, nil
}

// openRegularIn opens name in r if it is a regular file, without following a symlink or blocking on a fifo.
func openRegularIn(r *os.Root, name string) (*os.File, error) {
	f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return f, nil
}

func readCacheRecord(r *os.Root) (CacheRecord, error) {
	var rec CacheRecord
	f, err := openRegularIn(r, cacheRecordName)
	if err != nil {
		return rec, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheRecord+1))
	if err != nil {
		return rec, err
	}
	if len(data) > maxCacheRecord {
		return rec, fmt.Errorf("%s is larger than %d bytes", cacheRecordName, maxCacheRecord)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("reading %s: %w", cacheRecordName, err)
	}
	if rec.Key != filepath.Base(r.Name()) || rec.CacheKey.hex() != rec.Key {
		return rec, fmt.Errorf("%s does not describe the cache it is stored with", cacheRecordName)
	}
	if err := rec.Digest.Validate(); err != nil {
		return rec, fmt.Errorf("reading %s: %w", cacheRecordName, err)
	}
	return rec, nil
}

// lockCache takes the flock of a cache's directory (creating it when create is set) and returns its release.
// The lock is checked to still be the directory's after it is taken: `ssf cache rm` removes a directory under its
// lock, and a lock on a removed file guards nothing.
func lockCache(kdir string, create bool) (func(), error) {
	for {
		if create {
			if err := os.MkdirAll(kdir, 0o700); err != nil {
				return nil, err
			}
		}
		lockPath := filepath.Join(kdir, cacheLockName)
		flags := os.O_RDWR | syscall.O_NOFOLLOW
		if create {
			flags |= os.O_CREATE
		}
		f, err := os.OpenFile(lockPath, flags, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
		held, herr := f.Stat()
		now, nerr := os.Lstat(lockPath)
		if herr == nil && nerr == nil && os.SameFile(held, now) {
			return func() { f.Close() }, nil
		}
		f.Close()
		if !create && nerr != nil {
			return nil, nerr
		}
	}
}

// keep writes a finished task's caches back (nothing when --no-cache): each copy as a new tar stream, at most
// maxCacheBytes, replacing the stored one. It runs after the task's container is gone, so nothing changes a copy
// while it is read. Failing to keep a cache is a warning, never a failed build; an over-size cache is dropped.
func (c *caches) keep(ctx context.Context, t *pipeline.Task, dir string) {
	if c == nil || c.off {
		return
	}
	for _, dc := range t.Caches {
		c.keepOne(ctx, c.key(t, dc.Name), filepath.Join(dir, "caches", dc.Name))
	}
}

// keepAfter stores a finished task's caches in the background, so that the tasks that need it can start, then calls
// release (which unmounts the task's disk, where the copies are); it reports whether it took release. wait waits
// for every such store: the build does after it signed and published, before its uid and work directory go (a
// run that failed abandons them first), and a cancelled build cancels the stores.
func (c *caches) keepAfter(ctx context.Context, t *pipeline.Task, dir string, release func()) bool {
	if c == nil || c.off || len(t.Caches) == 0 {
		return false
	}
	if c.storeCtx != nil {
		ctx = c.storeCtx
	}
	c.stores.Add(1)
	go func() {
		defer c.stores.Done()
		defer release()
		c.keep(ctx, t, dir)
	}()
	return true
}

// storeIn gives the stores the build's context ctx: a run that succeeded leaves them running while the build
// signs and publishes (a stored cache is not in the provenance, which records what the tasks got), and the build
// waits for them before its uid and work directory go. A run that failed abandons them.
func (c *caches) storeIn(ctx context.Context) {
	if c != nil {
		c.storeCtx, c.stopStores = context.WithCancel(ctx)
	}
}

// abandon cancels the stores still under way and waits for them (each releases its task's disk as it ends).
func (c *caches) abandon() {
	if c != nil {
		if c.stopStores != nil {
			c.stopStores()
		}
		c.stores.Wait()
	}
}

// wait waits for the stores, then lets their context go.
func (c *caches) wait() {
	if c != nil {
		c.stores.Wait()
		if c.stopStores != nil {
			c.stopStores()
		}
	}
}

// keepOne stores one task's copy of the cache k, saying in the build log what became of it.
func (c *caches) keepOne(ctx context.Context, k CacheKey, copyDir string) {
	switch n, err := c.store(ctx, k, copyDir); {
	case errors.Is(err, errCacheTooBig):
		c.log.printf("cache %s of task %s grew past maxCacheBytes (%d bytes) and was dropped; the next build starts it empty", k.Cache, k.Task, c.max)
	case errors.Is(err, errCacheTooMany):
		c.log.printf("cache %s of task %s grew past %d files, directories and links (or a %d-byte path, or %d MiB of paths) and was dropped; the next build starts it empty", k.Cache, k.Task, c.maxEntries(), maxCachePath, maxCachePathBytes>>20)
	case err != nil:
		c.log.printf("warning: cache %s of task %s was not kept: %v", k.Cache, k.Task, err)
	case n.skipped > 0:
		c.log.printf("cache %s of task %s kept (%d bytes); %d fifos, sockets or devices in it were left out", k.Cache, k.Task, n.bytes, n.skipped)
	}
}

var (
	errCacheTooBig  = errors.New("cache is larger than maxCacheBytes")
	errCacheTooMany = errors.New("cache has too many entries")
)

func (c *caches) maxEntries() int {
	if c.entries > 0 {
		return c.entries
	}
	return maxCacheEntries
}

type storeStats struct {
	bytes   int64
	skipped int
}

// store writes copyDir as the cache k: a tar stream into a temporary file beside cache.tar, synced, then renamed
// over it and the record replaced, under the cache's lock. An over-size cache removes what was stored.
func (c *caches) store(ctx context.Context, k CacheKey, copyDir string) (storeStats, error) {
	var st storeStats
	kdir := filepath.Join(c.dir, k.hex())
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return st, err
	}
	if err := os.MkdirAll(kdir, 0o700); err != nil {
		return st, err
	}
	if c.untouched(k, copyDir) {
		if st, kept, err := c.keepStored(k, kdir); err != nil || kept {
			return st, err
		}
	}
	removeStaleTemps(kdir)
	tmp, err := os.CreateTemp(kdir, ".cache.tar-")
	if err != nil {
		return st, err
	}
	defer os.Remove(tmp.Name()) // gone by the rename when all went well
	defer tmp.Close()
	// The walk's sizes are added up before any file is read, so a sparse giant is refused without reading it;
	// each entry costs at least a 512-byte header. The writer's bound catches the rest (long names, padding).
	var planned, pathBytes int64
	var count int
	over, tooMany := false, false
	include := func(rel string, fi fs.FileInfo) bool {
		switch {
		case over || tooMany:
			return false
		case fi.Mode().IsRegular():
			planned += 512 + fi.Size()
		case fi.IsDir(), fi.Mode()&fs.ModeSymlink != 0:
			planned += 512
		default:
			st.skipped++ // fifos, sockets, devices: nothing to keep, and never to be opened
			return false
		}
		if planned > c.max {
			over = true
			return false
		}
		// Checked before the walk goes into a directory: a path too long stops the descent at that level.
		pathBytes += int64(len(rel))
		if count++; count > c.maxEntries() || len(rel) > maxCachePath || pathBytes > maxCachePathBytes {
			tooMany = true
			return false
		}
		return true
	}
	h := sha256.New()
	lw := &limitWriter{w: io.MultiWriter(tmp, h), left: c.max}
	if _, err := archive.WriteTree(ctx, lw, copyDir, include); err != nil {
		if errors.Is(err, errCacheTooBig) {
			if err := c.drop(kdir); err != nil {
				return st, err
			}
			return st, errCacheTooBig
		}
		return st, err
	}
	if over || tooMany {
		if err := c.drop(kdir); err != nil {
			return st, err
		}
		if tooMany {
			return st, errCacheTooMany
		}
		return st, errCacheTooBig
	}
	st.bytes = c.max - lw.left
	rec := CacheRecord{Key: k.hex(), CacheKey: k, Digest: digest.NewDigest(digest.SHA256, h), Bytes: st.bytes,
		LastUsed: time.Now().UTC(), Invocation: c.invocID, StoredBy: c.invocID}
	c.mu.Lock()
	given := c.given[k.hex()]
	c.mu.Unlock()
	unlock, err := lockCache(kdir, true)
	if err != nil {
		return st, err
	}
	defer unlock()
	// A task that changed nothing (a warm Go build only reads its cache; times are not in the stream) leaves the
	// stored stream as it is, if it is still the one the task got: only the record's time of use changes. This
	// saves writing back and syncing the whole cache on every build.
	unchanged := false
	if given == rec.Digest {
		if r, err := os.OpenRoot(kdir); err == nil {
			cur, err := readCacheRecord(r)
			r.Close()
			unchanged = err == nil && cur.Digest == rec.Digest
			if unchanged {
				// Only then: when the store now holds another build's stream (or no record), this build writes
				// the stream, and storedBy must say so, not name whoever wrote the stream it replaces.
				rec.StoredBy = cur.StoredBy
			}
		}
	}
	if !unchanged {
		if err := tmp.Sync(); err != nil {
			return st, err
		}
		if err := os.Rename(tmp.Name(), filepath.Join(kdir, cacheTarName)); err != nil {
			return st, err
		}
	}
	// A crash between the rename and the record leaves a record whose digest the tar no longer has: the next
	// build sees the mismatch and starts the cache empty.
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return st, err
	}
	if err := durable.Replace(filepath.Join(kdir, cacheRecordName), append(data, '\n'), 0o600); err != nil {
		return st, err
	}
	return st, durable.SyncDir(kdir)
}

// keepStored keeps the stored stream of a cache whose copy the task left as it got it (cache_stamp.go), if the
// store still holds the stream the task got: only the record's time of use and invocation change. kept is false
// when another build stored its own stream meanwhile: then this build's copy is stored in full, as any other.
func (c *caches) keepStored(k CacheKey, kdir string) (st storeStats, kept bool, err error) {
	c.mu.Lock()
	given := c.given[k.hex()]
	c.mu.Unlock()
	unlock, err := lockCache(kdir, true)
	if err != nil {
		return st, false, err
	}
	defer unlock()
	r, err := os.OpenRoot(kdir)
	if err != nil {
		return st, false, nil
	}
	cur, err := readCacheRecord(r)
	r.Close()
	if err != nil || cur.Digest != given {
		return st, false, nil
	}
	cur.LastUsed, cur.Invocation = time.Now().UTC(), c.invocID
	data, err := json.MarshalIndent(cur, "", "  ")
	if err != nil {
		return st, false, err
	}
	if err := durable.Replace(filepath.Join(kdir, cacheRecordName), append(data, '\n'), 0o600); err != nil {
		return st, false, err
	}
	return storeStats{bytes: cur.Bytes}, true, durable.SyncDir(kdir)
}

// removeStaleTemps removes the temporary streams of builds killed while storing this cache. One younger than a day
// may be a running build's, and is left alone.
func removeStaleTemps(kdir string) {
	entries, _ := os.ReadDir(kdir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".cache.tar-") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > 24*time.Hour {
			os.Remove(filepath.Join(kdir, e.Name()))
		}
	}
}

// drop removes a stored cache, under its lock.
func (c *caches) drop(kdir string) error {
	unlock, err := lockCache(kdir, true)
	if err != nil {
		return err
	}
	defer unlock()
	return os.RemoveAll(kdir)
}

// descriptors are the caches every task got, in task order then declaration order, for the provenance.
func (c *caches) descriptors(order []*pipeline.Task) []provenance.ResourceDescriptor {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []provenance.ResourceDescriptor
	for _, t := range order {
		out = append(out, c.used[t.Name]...)
	}
	return out
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// limitWriter fails with errCacheTooBig once more than left bytes are written.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errCacheTooBig
	}
	n, err := w.w.Write(p)
	w.left -= int64(n)
	return n, err
}

// Caches lists the stored task caches, newest use first. A directory whose record cannot be read is listed with
// only its key and the error, so `ssf cache rm` can still remove it.
func (h Home) Caches() ([]CacheRecord, error) { return h.cachesIn(h.layout().TaskCaches()) }

func (h Home) cachesIn(dir string) ([]CacheRecord, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing caches in %s: %w", dir, err)
	}
	var recs []CacheRecord
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != 64 {
			continue
		}
		rec := CacheRecord{Key: e.Name()}
		if r, err := os.OpenRoot(filepath.Join(dir, e.Name())); err == nil {
			if got, err := readCacheRecord(r); err == nil {
				rec = got
			}
			r.Close()
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b CacheRecord) int {
		if c := b.LastUsed.Compare(a.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return recs, nil
}

// CacheSelector chooses stored caches: by a key prefix (at least 8 hex digits), or by pipeline name, task and
// cache name (empty matches any). A selector that chooses nothing removes nothing. UnusedSince, when set, narrows
// any of these (or, alone, chooses every cache) to the caches last used before it: caches are kept per pipeline
// file, source directory and builder digest, so a moved checkout or a new builder leaves its old caches unused
// for good, and this is how they are pruned. A cache whose record cannot be read counts as never used.
type CacheSelector struct {
	KeyPrefix             string
	Pipeline, Task, Cache string
	All                   bool
	UnusedSince           time.Time
}

func (s CacheSelector) matches(r CacheRecord) bool {
	if !s.UnusedSince.IsZero() && !r.LastUsed.Before(s.UnusedSince) {
		return false
	}
	switch {
	case s.All:
		return true
	case s.KeyPrefix != "":
		return strings.HasPrefix(r.Key, s.KeyPrefix)
	case s.Pipeline == "":
		return !s.UnusedSince.IsZero()
	}
	return r.Pipeline == s.Pipeline && (s.Task == "" || r.Task == s.Task) && (s.Cache == "" || r.CacheKey.Cache == s.Cache)
}

// RemoveCaches removes the stored caches sel chooses, each under its lock (a build storing it meanwhile waits,
// then stores it anew), and returns them.
func (h Home) RemoveCaches(sel CacheSelector) ([]CacheRecord, error) {
	recs, err := h.Caches()
	if err != nil {
		return nil, err
	}
	var removed []CacheRecord
	for _, r := range recs {
		if !sel.matches(r) {
			continue
		}
		kdir := filepath.Join(h.layout().TaskCaches(), r.Key)
		unlock, err := lockCache(kdir, false)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
			unlock = func() {}
		}
		if fi, lerr := os.Lstat(filepath.Join(kdir, cacheLockName)); err != nil && lerr == nil && !fi.Mode().IsRegular() {
			// A lock that is not a regular file (a symlink, a directory) cannot be taken by any build either, so
			// no build uses or stores this cache: it is removed without the lock (RemoveAll follows no symlink),
			// rather than staying unusable and unremovable.
			err = nil
			unlock = func() {}
		}
		if err != nil {
			return removed, fmt.Errorf("removing cache %s: %w (remove the directory %s by hand)", r.Key, err, kdir)
		}
		err = os.RemoveAll(kdir)
		unlock()
		if err != nil {
			return removed, fmt.Errorf("removing cache %s: %w", r.Key, err)
		}
		removed = append(removed, r)
	}
	return removed, nil
}
