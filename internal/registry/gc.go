package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// GCStats says what a garbage collection did.
type GCStats struct {
	Manifests    int   // manifests found in all repositories (the roots of the mark phase)
	BlobsKept    int   // blobs referenced by a manifest, or younger than the grace period
	BlobsRemoved int   // unreferenced blobs removed
	BytesRemoved int64 // their total size
	LinksRemoved int   // repository links to removed blobs
	Uploads      int   // abandoned upload sessions removed
}

// abandonedUpload is how long an upload session may sit untouched before GC removes it.
const abandonedUpload = 24 * time.Hour

// maxUploadAge is how long an upload session may last however active it is. A live session holds back the
// sweep of every blob younger than itself, so a pusher that touched one session a day stopped GC for good.
const maxUploadAge = 7 * 24 * time.Hour

// GC removes blobs that no manifest in any repository references.
//
// Mark: every manifest linked in any repository is a root; it and everything it references (config, layers,
// an index's children) is kept. Sweep: an unmarked blob is removed only if it is older than the grace period
// (WithGCGracePeriod) and older than the oldest upload in progress, because clients push blobs before the
// manifest that references them. Upload sessions untouched for a day, or older than a week, are removed. A blob's time is refreshed whenever it is pushed again or mounted.
//
// GC holds the registry's lock file exclusively for its whole run, and every write that links content holds
// it shared, so GC is safe against pushes from this process and from another one (ssf registry serve while
// ssf registry gc runs): a push waits for the sweep to end.
func (r *Registry) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	l, err := r.store.lock(true)
	if err != nil {
		return st, err
	}
	defer l.unlock()

	now := r.nowFor()
	cutoff := now.Add(-r.cfg.gcGrace)
	// Uploads: drop abandoned sessions; the oldest live one moves the cutoff back.
	entries, err := os.ReadDir(r.store.uploadsDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	for _, e := range entries {
		if !e.IsDir() || !uploadIDRE.MatchString(e.Name()) {
			continue
		}
		var u upload
		b, err := os.ReadFile(filepath.Join(r.store.uploadDir(e.Name()), "state"))
		if err == nil {
			err = json.Unmarshal(b, &u)
		}
		fi, statErr := e.Info()
		if err != nil || statErr != nil {
			continue // being created or removed right now; leave it
		}
		age := now.Sub(time.Unix(0, u.Started))
		if (now.Sub(fi.ModTime()) > abandonedUpload && age > abandonedUpload) || age > maxUploadAge {
			if err := os.RemoveAll(r.store.uploadDir(e.Name())); err != nil {
				return st, err
			}
			st.Uploads++
			continue
		}
		if started := time.Unix(0, u.Started); started.Before(cutoff) {
			cutoff = started
		}
	}

	repos, err := r.store.listRepos()
	if err != nil {
		return st, fmt.Errorf("listing repositories: %w", err)
	}
	marked := map[digest]bool{}
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		ms, err := listDigests(filepath.Join(r.store.repoDir(repo), "_manifests"))
		if err != nil {
			return st, err
		}
		for _, m := range ms {
			st.Manifests++
			marked[m] = true
			body, err := os.ReadFile(r.store.blobPath(m))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return st, err
			}
			for _, d := range referencedDigests(body) {
				marked[d] = true
			}
		}
	}

	blobs, err := listDigests(filepath.Join(r.store.dir, "blobs"))
	if err != nil {
		return st, err
	}
	removed := map[digest]bool{}
	var gone []digest
	for _, d := range blobs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		fi, err := os.Stat(r.store.blobPath(d))
		if err != nil {
			continue
		}
		if marked[d] || !fi.ModTime().Before(cutoff) {
			st.BlobsKept++
			continue
		}
		gone = append(gone, d)
		removed[d] = true
		st.BlobsRemoved++
		st.BytesRemoved += fi.Size()
	}
	if err := r.store.removeBlobs(gone); err != nil {
		return st, err
	}
	// Links to removed blobs would make the repository claim content it no longer has.
	for _, repo := range repos {
		links, err := listDigests(filepath.Join(r.store.repoDir(repo), "_blobs"))
		if err != nil {
			return st, err
		}
		var dangling []digest
		for _, d := range links {
			if removed[d] || !exists(r.store.blobPath(d)) {
				dangling = append(dangling, d)
			}
		}
		if err := r.store.unlinkBlobs(repo, dangling); err != nil {
			return st, err
		}
		st.LinksRemoved += len(dangling)
	}
	r.log.Info("registry gc", "manifests", st.Manifests, "kept", st.BlobsKept, "removed", st.BlobsRemoved,
		"bytes", st.BytesRemoved, "links", st.LinksRemoved, "uploads", st.Uploads)
	return st, nil
}
