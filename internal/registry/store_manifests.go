package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/ssf-dev/ssf/internal/durable"
)

// The store's manifests and tags, and the order in which they become durable or go: what a name points at is
// on disk before the name, and a name goes before what it points at.

// missingRefError: a manifest names a blob (or an index a manifest) that the repository does not hold.
type missingRefError struct {
	kind string // "blob" or "manifest"
	d    digest
}

func (e *missingRefError) Error() string {
	return fmt.Sprintf("%s %s is not in the repository", e.kind, e.d)
}

// refSizeError: a manifest gives a size for a blob (or an index for a manifest) other than the stored one.
type refSizeError struct {
	kind      string
	d         digest
	got, want int64
}

func (e *refSizeError) Error() string {
	return fmt.Sprintf("%s %s has %d bytes, the manifest says %d", e.kind, e.d, e.got, e.want)
}

// putManifest stores the manifest body (parsed as m, hashing to d) in repository name and points tags at it.
// Under the shared lock, so GC cannot sweep in between, it checks that the repository holds everything m
// references (a *missingRefError or *refSizeError otherwise), then makes durable, in this order: the bytes, the
// referrers record of m's subject, the repository's link, the tags.
func (s *store) putManifest(ctx context.Context, name string, d digest, body []byte, m *manifest, tags []string) error {
	defer s.lockRepo(name)()
	l, err := s.lock(false)
	if err != nil {
		return err
	}
	defer l.unlock()
	for _, b := range m.blobs {
		size, err := s.blobSize(b.d)
		if err != nil || !exists(s.blobLink(name, b.d)) {
			return &missingRefError{kind: "blob", d: b.d}
		}
		if size != b.size {
			return &refSizeError{kind: "blob", d: b.d, got: size, want: b.size}
		}
	}
	for _, c := range m.children {
		if !exists(s.manifestLink(name, c.d)) || !exists(s.blobPath(c.d)) {
			return &missingRefError{kind: "manifest", d: c.d}
		}
		if size, err := s.blobSize(c.d); err != nil || size != c.size {
			return &refSizeError{kind: "manifest", d: c.d, got: size, want: c.size}
		}
	}
	if err := s.putBlobBytes(ctx, d, body); err != nil {
		return err
	}
	if m.subject != nil {
		// The record is bounded when written, so listing referrers never reads large records.
		rec, err := json.Marshal(referrerDescriptor(m.mediaType, d, int64(len(body)), m.artifactType, m.annotations))
		if err == nil {
			err = writeLink(ctx, s.referrerPath(name, *m.subject, d), rec)
		}
		if err != nil {
			return err
		}
	}
	if err := writeLink(ctx, s.manifestLink(name, d), []byte(m.mediaType)); err != nil {
		return err
	}
	for _, t := range tags {
		if err := writeLink(ctx, s.tagPath(name, t), []byte(d.String())); err != nil {
			return err
		}
	}
	return nil
}

// untag removes the tag, durably; it fails with fs.ErrNotExist when there is no such tag.
func (s *store) untag(name, tag string) error {
	return durable.Remove(s.tagPath(name, tag))
}

// deleteManifest removes manifest d from the repository: its tags, then its referrers record, then its link,
// each durable before the next goes, so a crash part-way leaves a manifest that is still fully served, never a
// tag or referrer pointing at nothing. It fails with fs.ErrNotExist when the repository has no such manifest.
func (s *store) deleteManifest(name string, d digest) error {
	defer s.lockRepo(name)()
	link := s.manifestLink(name, d)
	if !exists(link) {
		return fmt.Errorf("manifest %s in %q: %w", d, name, fs.ErrNotExist)
	}
	entries, err := os.ReadDir(s.tagsDir(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	removed := false
	for _, e := range entries {
		if !validTag(e.Name()) {
			continue
		}
		p := s.tagPath(name, e.Name())
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == d.String() {
			testHookTagRead()
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			removed = true
		}
	}
	if removed {
		if err := durable.SyncDir(s.tagsDir(name)); err != nil {
			return err
		}
	}
	if body, err := os.ReadFile(s.blobPath(d)); err == nil {
		if subj, ok := subjectOf(body); ok {
			if err := durable.Remove(s.referrerPath(name, subj, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return durable.Remove(link)
}

// testHookTagRead runs in deleteManifest between reading a tag that points at the manifest and removing it.
var testHookTagRead = func() {}

// readTag returns the digest tag points at, or an error wrapping fs.ErrNotExist.
func (s *store) readTag(name, tag string) (digest, error) {
	p := s.tagPath(name, tag)
	b, err := os.ReadFile(p)
	if err != nil {
		return digest{}, err
	}
	d, err := parseDigest(strings.TrimSpace(string(b)))
	if err != nil {
		return digest{}, fmt.Errorf("tag file %q: %w", p, err)
	}
	return d, nil
}
