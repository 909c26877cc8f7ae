package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// resolve turns a tag or digest reference into a digest; it fails when the reference is malformed or the tag
// unknown.
func (r *Registry) resolve(name, reference string) (digest, error) {
	if strings.Contains(reference, ":") {
		d, err := parseDigest(reference)
		if err != nil {
			return digest{}, errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
		}
		return d, nil
	}
	if !validTag(reference) {
		// No manifest can exist under a name that is not a tag, so a pull answers "unknown", as clients and
		// both the 2023 and current conformance suites expect; only a push of such a tag is invalid input.
		return digest{}, errf(http.StatusNotFound, codeManifestUnknown,
			fmt.Sprintf("no tag %q in repository %q: not a valid tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})", trimmed(reference), name))
	}
	d, err := r.store.readTag(name, reference)
	if errors.Is(err, fs.ErrNotExist) {
		return digest{}, errf(http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("no tag %q in repository %q", reference, name))
	}
	return d, err
}

func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, name, reference string) error {
	d, err := r.resolve(name, reference)
	if err != nil {
		return err
	}
	mt, err := os.ReadFile(r.store.manifestLink(name, d))
	if errors.Is(err, fs.ErrNotExist) {
		return errf(http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("manifest %s is not in repository %q", d, name))
	}
	if err != nil {
		return err
	}
	body, err := os.ReadFile(r.store.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return errf(http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("manifest %s is not in repository %q", d, name))
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", string(mt))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, name, reference string) error {
	ctx := req.Context()
	var tags []string
	var want *digest
	if strings.Contains(reference, ":") {
		d, err := parseDigest(reference)
		if err != nil {
			return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
		}
		want = &d
	} else {
		tags = append(tags, reference)
	}
	tags = append(tags, req.URL.Query()["tag"]...)
	for _, t := range tags {
		if !validTag(t) {
			return errf(http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("invalid tag %q", trimmed(t)))
		}
	}
	if req.ContentLength > MaxManifestSize {
		return errf(http.StatusRequestEntityTooLarge, codeSizeInvalid,
			fmt.Sprintf("manifest of %d bytes exceeds the limit of %d", req.ContentLength, MaxManifestSize))
	}
	body, err := io.ReadAll(io.LimitReader(&ctxReader{ctx: ctx, r: req.Body}, MaxManifestSize+1))
	if err != nil {
		return errf(http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("reading manifest: %v", err))
	}
	if len(body) > MaxManifestSize {
		return errf(http.StatusRequestEntityTooLarge, codeSizeInvalid,
			fmt.Sprintf("manifest exceeds the limit of %d bytes", MaxManifestSize))
	}
	alg := "sha256"
	if want != nil {
		alg = want.alg
	}
	d := digestOf(alg, body)
	if want != nil && *want != d {
		return errf(http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("manifest digest is %s, not %s", d, want))
	}
	m, err := parseManifest(req.Header.Get("Content-Type"), body)
	if err != nil {
		return errf(http.StatusBadRequest, codeManifestInvalid, err.Error())
	}
	var missing *missingRefError
	var size *refSizeError
	switch err := r.store.putManifest(ctx, name, d, body, m, tags); {
	case errors.As(err, &missing):
		return errf(http.StatusBadRequest, codeManifestBlobUnknown, fmt.Sprintf("%s %s is not in repository %q", missing.kind, missing.d, name))
	case errors.As(err, &size) && size.kind == "blob":
		return errf(http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("blob %s has %d bytes, the manifest says %d", size.d, size.got, size.want))
	case errors.As(err, &size):
		return errf(http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("manifest %s has %d bytes, the index says %d", size.d, size.got, size.want))
	case err != nil:
		return err
	}
	h := w.Header()
	if m.subject != nil {
		h.Set("OCI-Subject", m.subject.String())
	}
	if q := req.URL.Query()["tag"]; len(q) > 0 {
		h.Set("OCI-Tag", strings.Join(q, ", "))
	}
	h.Set("Location", "/v2/"+name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, name, reference string) error {
	if !strings.Contains(reference, ":") {
		if !validTag(reference) {
			return errf(http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("invalid tag %q", trimmed(reference)))
		}
		err := r.store.untag(name, reference)
		if errors.Is(err, fs.ErrNotExist) {
			return errf(http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("no tag %q in repository %q", reference, name))
		}
		if err != nil {
			return err
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	d, err := parseDigest(reference)
	if err != nil {
		return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	err = r.store.deleteManifest(name, d)
	if errors.Is(err, fs.ErrNotExist) {
		return errf(http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("manifest %s is not in repository %q", d, name))
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// maxTagsPage bounds the tags one listing answers with.
const maxTagsPage = 1000

func (r *Registry) listTags(w http.ResponseWriter, req *http.Request, name string) error {
	if fi, err := os.Stat(r.store.repoDir(name)); err != nil || !fi.IsDir() {
		return errf(http.StatusNotFound, codeNameUnknown, fmt.Sprintf("no repository %q", name))
	}
	q := req.URL.Query()
	n := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return errf(http.StatusBadRequest, codeUnsupported, fmt.Sprintf("invalid n %q: want a number >= 0", trimmed(s)))
		}
		n = v
	}
	// Without n, or with a larger one, a page holds maxTagsPage tags and Link names the next: a pusher can
	// make thousands of tags, and one listing must not hold them all (the spec lets registries page this way).
	page := maxTagsPage
	if n >= 0 && n < page {
		page = n
	}
	tags, more, err := firstNames(r.store.tagsDir(name), q.Get("last"), page, func(e fs.DirEntry) bool {
		return validTag(e.Name()) && e.Type().IsRegular()
	})
	if err != nil {
		return err
	}
	if tags == nil {
		tags = []string{}
	}
	if more && page > 0 {
		next := url.Values{"n": {strconv.Itoa(page)}, "last": {tags[len(tags)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, name, next.Encode()))
	}
	return writeJSON(w, req, "application/json", tagList{Name: name, Tags: tags})
}

func writeJSON(w http.ResponseWriter, req *http.Request, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(b)
	}
	return nil
}
