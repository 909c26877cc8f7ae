package deps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/durable"
)

// Bounds on fetching.
const (
	// DefaultConcurrency is how many downloads run at once when Options.Concurrency is 0.
	DefaultConcurrency = 16
	// MaxDownloadBytes bounds one download (the Go module proxy protocol's own bound on a module zip is 500 MiB).
	MaxDownloadBytes = 512 << 20
	// MaxGoModBytes bounds a module's go.mod, as the go command does (cmd/go's codehost.MaxGoMod): ingestion reads
	// and parses it whole, and a proxy could otherwise send 512 MiB for each one.
	MaxGoModBytes = 16 << 20
	// DefaultMaxTotalBytes bounds what one ingestion offers in all, downloaded or from the cache, when
	// Options.MaxTotalBytes is 0. A lock file names its own download URLs and pins, so without it one source could
	// fill the host's disk with bytes that match their pins.
	DefaultMaxTotalBytes = 8 << 30
)

// fetcher is one ingestion: the options, the cache, and the bound on downloads at once.
type fetcher struct {
	opts   Options
	client *http.Client
	tmpDir string // downloads in progress, in the cache's file system (so a checked one is linked into place)
	slots  chan struct{}

	maxTotal int64        // bound on the bytes of this ingestion, downloaded or from the cache
	total    atomic.Int64 // bytes counted against maxTotal so far

	progress *progress

	admissions admissions // Options.Admit's decisions (admit.go)
}

func newFetcher(opts Options) (*fetcher, error) {
	if opts.Cache == "" {
		return nil, errors.New("deps: no cache directory")
	}
	// The cache may hold private modules (from a proxy that needs credentials): no other local account reads it,
	// whatever mode the directory had before.
	if err := durable.MkdirAll(opts.Cache, 0o700); err != nil {
		return nil, fmt.Errorf("creating the dependency cache %q: %w", opts.Cache, err)
	}
	if fi, err := os.Stat(opts.Cache); err != nil {
		return nil, err
	} else if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(opts.Cache, 0o700); err != nil {
			return nil, fmt.Errorf("making the dependency cache %q private: %w", opts.Cache, err)
		}
	}
	tmpDir := filepath.Join(opts.Cache, "tmp")
	if err := durable.MkdirAll(tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the dependency cache %q: %w", opts.Cache, err)
	}
	sweepTmp(tmpDir, time.Now().Add(-maxTmpAge))
	client := opts.Client
	if client == nil {
		client = defaultClient()
	}
	client = withCredentials(client, opts.Credentials)
	n := opts.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	maxTotal := opts.MaxTotalBytes
	if maxTotal <= 0 {
		maxTotal = DefaultMaxTotalBytes
	}
	return &fetcher{opts: opts, client: client, tmpDir: tmpDir, slots: make(chan struct{}, n), maxTotal: maxTotal, progress: &progress{w: opts.Progress}}, nil
}

// maxTmpAge is how old a download in the cache's tmp directory must be to be taken as left by a build that
// crashed: far beyond the default client's 10-minute bound on one download, so no running build loses its own.
const maxTmpAge = time.Hour

// sweepTmp removes the downloads in dir last written before cutoff: a crash (or a kill) mid-download leaves its
// temporary file behind, and nothing else would ever remove it. They are never trusted in any case: only a
// checked download is linked under its key.
func sweepTmp(dir string, cutoff time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// spend counts n more bytes against the ingestion's bound.
func (f *fetcher) spend(n int64) error {
	if f.total.Add(n) > f.maxTotal {
		return inputErrorf("the dependencies add up to more than %d bytes, ssf's bound on one build's dependencies: depend on fewer or smaller packages", f.maxTotal)
	}
	return nil
}

// budgetWriter counts what is written to it against the fetcher's bound, and fails past it.
type budgetWriter struct{ f *fetcher }

func (w budgetWriter) Write(b []byte) (int, error) {
	if err := w.f.spend(int64(len(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// cached is a verified file in the cache.
type cached struct {
	Path   string        // in the cache
	Digest digest.Digest // sha256 of its bytes
	// file is the file at Path whose bytes were hashed and checked. Entries are replaced, never rewritten (a
	// damaged one is removed and a fresh download linked in its place), so another build may replace Path while
	// this one uses it: place offers only this file.
	file os.FileInfo
}

// errEntryChanged is a cache entry another build replaced while this one was reading it.
var errEntryChanged = errors.New("the cache entry was replaced by another build while this one read it; run the build again")

// get returns the cache entry named key (a path relative to the cache, derived from the pin, e.g.
// "sha512/<hex>"), after checking it. When it is missing, or what is there fails the check (a damaged cache), it
// is downloaded from url, checked, and only then stored under key. check gets the path of a complete file and
// returns a *MismatchError (or another error) when its bytes are not what the pin says.
//
// A cache hit is verified again before use: its sha256 is computed and must equal the record kept beside the
// entry (key + ".sha256", written by the control plane once those bytes passed check), or else check runs on it
// in full. The record spares a warm build the full check where it is costly (a module zip's h1 means inflating
// and hashing every file), never the hashing of the bytes themselves. So a key must name everything check
// depends on.
func (f *fetcher) get(ctx context.Context, key, url string, check func(path string) error) (cached, error) {
	// An entry another build replaced while this one checked it is taken again, as it is now (a few times: each
	// replacement is a fresh download another build checked).
	for attempt := 1; ; attempt++ {
		c, err := f.getOnce(ctx, key, url, check)
		if !errors.Is(err, errEntryChanged) || attempt == 3 {
			return c, err
		}
	}
}

func (f *fetcher) getOnce(ctx context.Context, key, url string, check func(path string) error) (cached, error) {
	// A cancelled ingestion (Ctrl-C) stops here too: a warm cache would otherwise be hashed, checked and laid out
	// in full, and the ingestion reported done.
	if err := ctx.Err(); err != nil {
		return cached{}, err
	}
	p := filepath.Join(f.opts.Cache, filepath.FromSlash(key))
	if fi, err := os.Stat(p); err == nil {
		// Counted before it is read: a cache filled by earlier builds is no way around the bound.
		if err := f.spend(fi.Size()); err != nil {
			return cached{}, err
		}
		// Held open until the check is done, so that the file hashed cannot be freed and its inode reused.
		fh, err := os.Open(p)
		if err != nil {
			return cached{}, err
		}
		d, file, err := hashOpen(fh)
		if err != nil {
			fh.Close()
			return cached{}, err
		}
		if checkedBefore(p, d) {
			fh.Close()
			f.progress.done(false)
			return cached{Path: p, Digest: d, file: file}, nil
		}
		err = check(p)
		if err == nil {
			// check read p by name: it must still be the file hashed. Another build that found it damaged
			// may have replaced it meanwhile, and the digest (and the record) would then be of bytes no
			// check saw.
			if now, serr := os.Stat(p); serr != nil || !sameEntry(file, now) {
				err = fmt.Errorf("checking the cached %s: %w", key, errEntryChanged)
			} else {
				err = recordChecked(p, d)
			}
			fh.Close()
			if err != nil {
				f.total.Add(-fi.Size())
				return cached{}, err
			}
			f.progress.done(false)
			return cached{Path: p, Digest: d, file: file}, nil
		}
		fh.Close()
		f.total.Add(-fi.Size())
		// A damaged entry is replaced by a fresh, checked download.
		for _, q := range []string{p, p + checkedSuffix} {
			if err := durable.Remove(q); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return cached{}, err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return cached{}, err
	}
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return cached{}, ctx.Err()
	}
	defer func() { <-f.slots }()
	if err := durable.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return cached{}, err
	}
	tmp, d, err := f.download(ctx, url, f.tmpDir, maxBytes(key))
	if err != nil {
		return cached{}, err
	}
	defer os.Remove(tmp)
	if err := check(tmp); err != nil {
		return cached{}, err
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return cached{}, err
	}
	file, err := os.Stat(tmp)
	if err != nil {
		return cached{}, err
	}
	switch err := durable.LinkNew(tmp, p); {
	case errors.Is(err, fs.ErrExist):
		// Another build stored the same entry meanwhile. Its bytes passed the same check, but may differ from
		// these (two zips of the same files hash alike by h1): the tree gets that file, so describe that one.
		if d, file, err = hashEntry(p); err != nil {
			return cached{}, err
		}
	case err != nil:
		return cached{}, err
	}
	if err := recordChecked(p, d); err != nil {
		return cached{}, err
	}
	f.progress.done(true)
	return cached{Path: p, Digest: d, file: file}, nil
}

// hashEntry returns the sha256 of the file at p and that file's identity, both of the one file opened.
func hashEntry(p string) (digest.Digest, os.FileInfo, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", nil, err
	}
	defer fh.Close()
	return hashOpen(fh)
}

// hashOpen returns the sha256 of what is left to read of fh and fh's identity.
func hashOpen(fh *os.File) (digest.Digest, os.FileInfo, error) {
	fi, err := fh.Stat()
	if err != nil {
		return "", nil, err
	}
	d, err := digest.SHA256.FromReader(fh)
	return d, fi, err
}

// sameEntry says whether a and b describe the same cache entry: the same inode, and, as an inode freed by a
// replaced entry may be reused at once for its replacement, the same size and modification time (a replacement
// is written after the entry it replaces was). The change time would not do: linking an entry changes it.
func sameEntry(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// checkedSuffix names the record of a cache entry's checked sha256, beside the entry. No cache key ends in it.
const checkedSuffix = ".sha256"

// checkedBefore says whether the bytes of the cache entry p, whose sha256 is d, are those that passed the pin
// check when the record was written.
func checkedBefore(p string, d digest.Digest) bool {
	rec, err := os.ReadFile(p + checkedSuffix)
	return err == nil && string(rec) == d.String()
}

// recordChecked records that the cache entry p, of sha256 d, passed its pin check.
func recordChecked(p string, d digest.Digest) error {
	return durable.Replace(p+checkedSuffix, []byte(d.String()), 0o444)
}

// maxBytes is the bound on one download stored under the cache key key: a go.mod's (the keys of Go modules end in
// their GOPROXY extension), or any other file's.
func maxBytes(key string) int64 {
	if strings.HasPrefix(key, "gomod/") && strings.HasSuffix(key, ".mod") {
		return MaxGoModBytes
	}
	return MaxDownloadBytes
}

// download fetches rawURL into a new temporary file in dir and returns its path and sha256. Messages name the URL
// without its user information: a proxy's or registry's credentials are the factory's, never a build log's.
func (f *fetcher) download(ctx context.Context, rawURL, dir string, limit int64) (string, digest.Digest, error) {
	url := redactURL(rawURL)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var got atomic.Int64
	go watchRate(ctx, cancel, &got)
	req, err := http.NewRequestWithContext(withDialPolicy(ctx, rawURL), http.MethodGet, rawURL, nil)
	if err != nil {
		return "", "", fmt.Errorf("fetching %s: %w", url, unwrapURLError(err))
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("fetching %s: %w", url, slowOr(ctx, unwrapURLError(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The status code only: the reason phrase is the server's text, and may carry terminal control bytes.
		return "", "", &FetchError{URL: url, Status: fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	tmp, err := os.CreateTemp(dir, ".tmp-download-*")
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(budgetWriter{f}, countWriter{&got}, tmp, h), io.LimitReader(resp.Body, limit+1))
	err = slowOr(ctx, err)
	if err == nil && n > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	}
	if err == nil {
		err = durable.Sync(tmp)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", "", fmt.Errorf("fetching %s: %w", url, unwrapURLError(err))
	}
	f.progress.bytes.Add(n)
	return tmp.Name(), digest.NewDigest(digest.SHA256, h), nil
}

// A download must keep up a minimum average rate once it has had minRateGrace to start: a server that trickles
// (a few bytes now and then, or headers and then nothing) would otherwise hold the build for the client's whole
// 10-minute timeout, per download. The floor is far below any real registry or proxy.
var (
	minRate      int64 = 16 << 10 // bytes per second, averaged over the download so far
	minRateGrace       = 30 * time.Second
	rateEvery          = time.Second
)

// errTooSlow is the cause a download is cancelled with when it falls below minRate.
var errTooSlow = errors.New("the server sends too slowly")

// watchRate cancels ctx with errTooSlow when the bytes counted in got fall below minRate after minRateGrace.
func watchRate(ctx context.Context, cancel context.CancelCauseFunc, got *atomic.Int64) {
	start := time.Now()
	t := time.NewTicker(rateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			elapsed := now.Sub(start)
			if elapsed >= minRateGrace && float64(got.Load()) < float64(minRate)*elapsed.Seconds() {
				cancel(fmt.Errorf("%w: %d bytes in %s, under %d bytes/s", errTooSlow, got.Load(), elapsed.Round(time.Millisecond), minRate))
				return
			}
		}
	}
}

// slowOr is the reason ctx was cancelled for being too slow, or err.
func slowOr(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errTooSlow) {
		return context.Cause(ctx)
	}
	return err
}

// countWriter counts the bytes written to it.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(b []byte) (int, error) { w.n.Add(int64(len(b))); return len(b), nil }

// FetchError is a download the server refused or did not have.
type FetchError struct {
	URL    string
	Status string
}

func (e *FetchError) Error() string { return fmt.Sprintf("fetching %s: %s", e.URL, e.Status) }

// place makes the cached file visible in the tree at rel (slash-separated), read-only. It links when the tree is on
// the cache's file system and copies otherwise; either way the bytes are those check accepted and c.Digest
// describes: the file placed must be the one get hashed (errEntryChanged otherwise).
func place(tree, rel string, c cached) error {
	p := filepath.Join(tree, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Link(c.Path, p); err == nil {
		if fi, err := os.Lstat(p); err != nil || !sameEntry(fi, c.file) {
			os.Remove(p)
			return fmt.Errorf("placing %s: %w", c.Path, errEntryChanged)
		}
		return nil
	}
	in, err := os.Open(c.Path)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !sameEntry(fi, c.file) {
		return fmt.Errorf("placing %s: %w", c.Path, errEntryChanged)
	}
	return copyFile(in, p, 0o444)
}

// sourceKey is the part of a cache key that names where an entry was fetched from: the sha256 of the URL (without
// user information), in hex, shortened. Files and npm packages are cached under their pin and their URL, not the
// pin alone: a cache hit then means these bytes came from this very URL (in this build or an earlier one), so
// the URL recorded for a dependency is always one its bytes were fetched from. Keyed by the pin alone, a lock or
// pipeline could have bytes fetched from its own server and recorded under a trusted URL with the same pin.
func sourceKey(rawURL string) string {
	sum := sha256.Sum256([]byte(redactURL(rawURL)))
	return hex.EncodeToString(sum[:16])
}

// hashFile returns the sha256 of the file at p.
func hashFile(p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digest.SHA256.FromReader(f)
}

// progress counts finished downloads and cache hits and shows them on a terminal, one line rewritten in place.
type progress struct {
	w     io.Writer
	mu    sync.Mutex
	total int
	hits  int
	got   int
	bytes atomic.Int64
	shown time.Time // when the line was last drawn
}

func (p *progress) expect(n int) {
	p.mu.Lock()
	p.total += n
	p.mu.Unlock()
}

// done counts one finished file and redraws the line, at most ten times a second.
func (p *progress) done(downloaded bool) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if downloaded {
		p.got++
	} else {
		p.hits++
	}
	if time.Since(p.shown) >= 100*time.Millisecond {
		p.draw()
	}
}

func (p *progress) draw() {
	fmt.Fprintf(p.w, "\rdependencies: %d/%d files (%d downloaded, %.1f MB; %d from the cache)", p.got+p.hits, p.total, p.got, float64(p.bytes.Load())/1e6, p.hits)
	p.shown = time.Now()
}

func (p *progress) finish() {
	if p.w != nil && p.total > 0 {
		p.mu.Lock()
		p.draw() // the final count
		p.mu.Unlock()
		fmt.Fprintln(p.w)
	}
}
