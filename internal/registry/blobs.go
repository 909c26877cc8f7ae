package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, name, ref string) error {
	d, err := parseDigest(ref)
	if err != nil {
		return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	if !exists(r.store.blobLink(name, d)) {
		return errf(http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in repository %q", d, name))
	}
	f, err := os.Open(r.store.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return errf(http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in repository %q", d, name))
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	// ServeContent streams the file and answers Range and HEAD requests (206, 416, Content-Range).
	http.ServeContent(w, req, "", time.Time{}, f)
	return nil
}

func (r *Registry) deleteBlob(w http.ResponseWriter, req *http.Request, name, ref string) error {
	d, err := parseDigest(ref)
	if err != nil {
		return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	if err := r.store.unlinkBlob(name, d); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errf(http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in repository %q", d, name))
		}
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// sessionLocks serialises requests on one upload session, with one lock per session in use: a request whose
// body stalls holds up only its own session (and is cut off by the transfer limits). Entries live only while a
// request holds or waits for them, so made-up ids cannot grow the map beyond the requests in flight.
type sessionLocks struct {
	mu sync.Mutex
	m  map[string]*sessionLock
}

type sessionLock struct {
	held chan struct{} // a token while locked
	refs int
}

// lock waits for the session's lock, or for ctx to end (the client went away).
func (s *sessionLocks) lock(ctx context.Context, id string) (func(), error) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*sessionLock{}
	}
	l := s.m[id]
	if l == nil {
		l = &sessionLock{held: make(chan struct{}, 1)}
		s.m[id] = l
	}
	l.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.m, id)
		}
		s.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

func uploadLocation(name, id string) string { return "/v2/" + name + "/blobs/uploads/" + id }

func setUploadHeaders(w http.ResponseWriter, name, id string, offset int64) {
	h := w.Header()
	h.Set("Location", uploadLocation(name, id))
	h.Set("Docker-Upload-UUID", id)
	end := offset - 1
	if end < 0 {
		end = 0
	}
	h.Set("Range", fmt.Sprintf("0-%d", end))
	h.Set("Content-Length", "0")
}

func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, name string) error {
	ctx := req.Context()
	q := req.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d, err := parseDigest(mount)
		if err != nil {
			return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
		}
		ok, err := r.mount(name, q.Get("from"), q.Has("from"), d)
		if err != nil {
			return err
		}
		if ok {
			w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
			w.Header().Set("Docker-Content-Digest", d.String())
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusCreated)
			return nil
		}
		// Not mountable: the spec says to fall back to an ordinary upload session.
	}
	var want *digest
	if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
		}
		want = &d
	}
	id, err := r.store.newUpload(ctx, name)
	if err != nil {
		return err
	}
	if want == nil {
		setUploadHeaders(w, name, id, 0)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	// Monolithic upload: the body is the whole blob.
	unlock, err := r.sessions.lock(ctx, id)
	if err != nil {
		r.store.removeUpload(id)
		return errClientGone
	}
	defer unlock()
	u, err := r.store.loadUpload(name, id)
	if err != nil || u == nil {
		r.store.removeUpload(id)
		return fmt.Errorf("reloading new upload %s: %v", id, err)
	}
	if err := r.appendChunk(ctx, id, u, req, false); err != nil {
		r.store.removeUpload(id)
		return err
	}
	return r.finish(w, req, name, id, u, *want)
}

// mount links blob d into repository name when the source repository has it. Without a "from" parameter any
// stored blob may be mounted: every authenticated client may pull every repository, so this reveals nothing.
func (r *Registry) mount(name, from string, hasFrom bool, d digest) (bool, error) {
	if hasFrom {
		if !validName(from) || !r.store.repoHasBlob(from, d) {
			return false, nil
		}
	} else if !exists(r.store.blobPath(d)) {
		return false, nil
	}
	return r.store.mountBlob(name, d)
}

// openUpload locks and loads the upload session id of repository name; on success the caller must call unlock.
func (r *Registry) openUpload(req *http.Request, name, id string) (*upload, func(), error) {
	if !uploadIDRE.MatchString(id) {
		return nil, nil, errf(http.StatusNotFound, codeBlobUploadUnknown, fmt.Sprintf("no upload %q in repository %q", trimmed(id), name))
	}
	unlock, err := r.sessions.lock(req.Context(), id)
	if err != nil {
		return nil, nil, errClientGone
	}
	u, err := r.store.loadUpload(name, id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if u == nil {
		unlock()
		return nil, nil, errf(http.StatusNotFound, codeBlobUploadUnknown, fmt.Sprintf("no upload %q in repository %q", id, name))
	}
	return u, unlock, nil
}

func (r *Registry) uploadStatus(w http.ResponseWriter, req *http.Request, name, id string) error {
	u, unlock, err := r.openUpload(req, name, id)
	if err != nil {
		return err
	}
	defer unlock()
	setUploadHeaders(w, name, id, u.Offset)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (r *Registry) cancelUpload(w http.ResponseWriter, req *http.Request, name, id string) error {
	_, unlock, err := r.openUpload(req, name, id)
	if err != nil {
		return err
	}
	defer unlock()
	r.store.removeUpload(id)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (r *Registry) patchUpload(w http.ResponseWriter, req *http.Request, name, id string) error {
	u, unlock, err := r.openUpload(req, name, id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.appendChunk(req.Context(), id, u, req, true); err != nil {
		if re := (*regError)(nil); errors.As(err, &re) && re.status == http.StatusRequestedRangeNotSatisfiable {
			setUploadHeaders(w, name, id, u.Offset)
			w.Header().Del("Content-Length")
		}
		return err
	}
	setUploadHeaders(w, name, id, u.Offset)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (r *Registry) putUpload(w http.ResponseWriter, req *http.Request, name, id string) error {
	u, unlock, err := r.openUpload(req, name, id)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := parseDigest(req.URL.Query().Get("digest"))
	if err != nil {
		return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	if err := r.appendChunk(req.Context(), id, u, req, true); err != nil {
		if re := (*regError)(nil); errors.As(err, &re) && re.status == http.StatusRequestedRangeNotSatisfiable {
			setUploadHeaders(w, name, id, u.Offset)
			w.Header().Del("Content-Length")
		}
		return err
	}
	return r.finish(w, req, name, id, u, d)
}

var contentRangeRE = regexp.MustCompile(`^(?:bytes[ =])?([0-9]+)-([0-9]+)$`)

// appendChunk checks the chunk's Content-Range and has the store append the request body to the session.
// On failure the data is cut back to the last acknowledged offset.
func (r *Registry) appendChunk(ctx context.Context, id string, u *upload, req *http.Request, allowRange bool) error {
	limit := int64(-1)
	if cr := req.Header.Get("Content-Range"); cr != "" && allowRange {
		m := contentRangeRE.FindStringSubmatch(cr)
		if m == nil {
			return errf(http.StatusBadRequest, codeBlobUploadInvalid, fmt.Sprintf("invalid Content-Range %q", cr))
		}
		start, err1 := strconv.ParseInt(m[1], 10, 64)
		end, err2 := strconv.ParseInt(m[2], 10, 64)
		if err1 != nil || err2 != nil || end < start {
			return errf(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, fmt.Sprintf("invalid Content-Range %q", cr))
		}
		if start != u.Offset {
			return errf(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
				fmt.Sprintf("chunk starts at %d, but the upload has %d bytes", start, u.Offset))
		}
		limit = end - start + 1
		if req.ContentLength >= 0 && req.ContentLength != limit {
			return errf(http.StatusBadRequest, codeSizeInvalid,
				fmt.Sprintf("Content-Range %q covers %d bytes but Content-Length is %d", cr, limit, req.ContentLength))
		}
	}
	want, declared := limit, "Content-Range"
	if want < 0 {
		want, declared = req.ContentLength, "Content-Length"
	}
	n, err := r.store.appendUpload(ctx, id, u, req.Body, want)
	var size *chunkSizeError
	var body *bodyError
	switch {
	case err == nil:
		return nil
	case isTimeout(err):
		return errf(http.StatusRequestTimeout, codeBlobUploadInvalid, fmt.Sprintf(
			"reading chunk: cut off after %d bytes: bodies must arrive at %d bytes/s on average after %s, with no pause over %s",
			n, r.limits.minRate, r.limits.grace, r.limits.stall))
	case errors.As(err, &size):
		return errf(http.StatusBadRequest, codeSizeInvalid, fmt.Sprintf("chunk has %d bytes, %s says %d", size.got, declared, want))
	case errors.As(err, &body):
		return errf(http.StatusBadRequest, codeBlobUploadInvalid, body.Error())
	}
	return err
}

// finish verifies the completed upload against d and moves it into blobs/. A mismatch deletes the session, so
// nothing of it is stored.
func (r *Registry) finish(w http.ResponseWriter, req *http.Request, name, id string, u *upload, d digest) error {
	ctx := req.Context()
	got, err := r.store.uploadDigest(ctx, id, u, d.alg)
	if err != nil {
		r.store.removeUpload(id)
		return err
	}
	if got != d {
		r.store.removeUpload(id)
		return errf(http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("content digest is %s, not %s", got, d))
	}
	err = r.store.commitUpload(ctx, name, id, d)
	r.store.removeUpload(id)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// ctxReader stops a copy when the request's context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// trimmed is used for messages quoting client input.
func trimmed(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return strings.TrimSpace(s)
}
