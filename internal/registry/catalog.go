package registry

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// maxCatalogPage bounds the repositories one catalog listing answers with, as maxTagsPage does for tags.
const maxCatalogPage = 1000

type catalog struct {
	Repositories []string `json:"repositories"`
}

// listCatalog answers GET /v2/_catalog with n/last paging and a Link header for the next page. Access is per
// registry, not per repository (a caller that may pull may pull every repository), so a caller who got past
// authorize may read every name listed.
func (r *Registry) listCatalog(w http.ResponseWriter, req *http.Request) error {
	q := req.URL.Query()
	page := maxCatalogPage
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return errf(http.StatusBadRequest, codeUnsupported, fmt.Sprintf("invalid n %q: want a number >= 0", trimmed(s)))
		}
		page = min(v, maxCatalogPage)
	}
	last := q.Get("last")
	if last != "" && !validName(last) {
		return errf(http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("invalid last %q: not a repository name", trimmed(last)))
	}
	repos, more, err := r.Repositories(req.Context(), last, page)
	if err != nil {
		return err
	}
	if repos == nil {
		repos = []string{}
	}
	if more && page > 0 {
		next := url.Values{"n": {strconv.Itoa(page)}, "last": {repos[len(repos)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?%s>; rel="next"`, next.Encode()))
	}
	return writeJSON(w, req, "application/json", catalog{Repositories: repos})
}

// Repositories returns, sorted, the first n repository names greater than after, and whether more exist. A
// repository is a directory under repos/ that holds manifests or blobs. Memory is bounded by n and by one
// directory's entries; the whole tree is walked, so a listing costs time in proportion to the repositories.
func (r *Registry) Repositories(ctx context.Context, after string, n int) ([]string, bool, error) {
	root := r.store.reposDir()
	h := &maxHeap{}
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.IsDir() {
			return nil
		}
		if strings.HasPrefix(e.Name(), "_") {
			return fs.SkipDir // a repository's own link directories, never a nested repository
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if name <= after || !validName(name) || !r.isRepository(path) {
			return nil
		}
		if h.Len() <= n {
			heap.Push(h, name)
		} else if name < (*h)[0] {
			(*h)[0] = name
			heap.Fix(h, 0)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing repositories: %w", err)
	}
	names := []string(*h)
	slices.Sort(names)
	if len(names) > n {
		return names[:n], true, nil
	}
	return names, false, nil
}

func (r *Registry) isRepository(dir string) bool {
	for _, sub := range []string{"_manifests", "_blobs"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// Tag is a tag and the digest it points at.
type Tag struct {
	Name   string
	Digest string // alg:hex
}

// ErrNameInvalid is wrapped when a repository name does not follow the distribution spec's grammar.
var ErrNameInvalid = errors.New("invalid repository name")

// Tags returns, sorted, the first n tags of repository name greater than after with the digests they point at,
// and whether more exist. An unknown repository is an error wrapping fs.ErrNotExist.
func (r *Registry) Tags(ctx context.Context, name, after string, n int) ([]Tag, bool, error) {
	if !validName(name) {
		return nil, false, fmt.Errorf("%w: %q (want lower-case components such as team/app)", ErrNameInvalid, name)
	}
	if fi, err := os.Stat(r.store.repoDir(name)); err != nil || !fi.IsDir() {
		return nil, false, fmt.Errorf("repository %q: %w", name, fs.ErrNotExist)
	}
	names, more, err := firstNames(r.store.tagsDir(name), after, n, func(e fs.DirEntry) bool {
		return validTag(e.Name()) && e.Type().IsRegular()
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing the tags of %q: %w", name, err)
	}
	tags := make([]Tag, 0, len(names))
	for _, t := range names {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		b, err := os.ReadFile(r.store.tagPath(name, t))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading tag %q of %q: %w", t, name, err)
		}
		d, err := parseDigest(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, false, fmt.Errorf("tag %q of %q: %w", t, name, err)
		}
		tags = append(tags, Tag{Name: t, Digest: d.String()})
	}
	return tags, more, nil
}
