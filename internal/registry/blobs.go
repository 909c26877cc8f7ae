package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
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
	link := r.store.blobLink(name, d)
	if !exists(link) {
		return errf(http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in repository %q", d, name))
	}
	// Only this repository's link goes: other repositories keep the bytes, and GC removes them once nothing
	// links or references them.
	return r.unlink(w, req, link)
}

// unlink removes a repository's link to a blob or manifest, durably, and answers 202 Accepted.
func (r *Registry) unlink(w http.ResponseWriter, req *http.Request, link string) error {
	if err := os.Remove(link); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(link)); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// linkBlob records that the repository holds the stored blob d, and refreshes the blob's time so a concurrent
// GC's grace period counts from now.
func (r *Registry) linkBlob(ctx context.Context, name string, d digest) error {
	now := time.Now()
	if err := os.Chtimes(r.store.blobPath(d), now, now); err != nil {
		return err
	}
	link := r.store.blobLink(name, d)
	if exists(link) {
		return nil
	}
	return writeFileAtomic(ctx, link, nil)
}

// upload is the persisted state of an upload session: uploads/<id>/state next to uploads/<id>/data.
type upload struct {
	Repo    string `json:"repo"`
	Offset  int64  `json:"offset"`
	SHA256  []byte `json:"sha256"` // the running hash's marshalled state after Offset bytes
	Started int64  `json:"started"`
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

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

func (r *Registry) newUpload(ctx context.Context, name string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	dir := r.store.uploadDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	f.Close()
	st, err := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return "", err
	}
	u := upload{Repo: name, SHA256: st, Started: time.Now().UnixNano()}
	if err := r.saveUpload(ctx, id, &u); err != nil {
		return "", err
	}
	return id, nil
}

func (r *Registry) saveUpload(ctx context.Context, id string, u *upload) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return writeFileAtomic(ctx, filepath.Join(r.store.uploadDir(id), "state"), b)
}

// loadUpload reads a session; it returns nil when there is none for this repository. Bytes beyond the saved
// offset (a crash between writing data and saving state) were never acknowledged and are cut off.
func (r *Registry) loadUpload(name, id string) (*upload, error) {
	if !uploadIDRE.MatchString(id) {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(r.store.uploadDir(id), "state"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var u upload
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("upload %s: corrupt state: %w", id, err)
	}
	if u.Repo != name {
		return nil, nil
	}
	data := filepath.Join(r.store.uploadDir(id), "data")
	fi, err := os.Stat(data)
	if err != nil {
		return nil, err
	}
	switch {
	case fi.Size() > u.Offset:
		if err := os.Truncate(data, u.Offset); err != nil {
			return nil, err
		}
	case fi.Size() < u.Offset:
		return nil, fmt.Errorf("upload %s: data is shorter than its acknowledged offset", id)
	}
	return &u, nil
}

func (r *Registry) removeUpload(id string) {
	os.RemoveAll(r.store.uploadDir(id))
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
		ok, err := r.mount(ctx, name, q.Get("from"), q.Has("from"), d)
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
	id, err := r.newUpload(ctx, name)
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
		r.removeUpload(id)
		return errClientGone
	}
	defer unlock()
	u, err := r.loadUpload(name, id)
	if err != nil || u == nil {
		r.removeUpload(id)
		return fmt.Errorf("reloading new upload %s: %v", id, err)
	}
	if st, code, msg := r.appendChunk(ctx, id, u, req, false); st != 0 {
		r.removeUpload(id)
		return errf(st, code, msg)
	}
	return r.finish(w, req, name, id, u, *want)
}

// mount links blob d into repository name when the source repository has it. Without a "from" parameter any
// stored blob may be mounted: every authenticated client may pull every repository, so this reveals nothing.
func (r *Registry) mount(ctx context.Context, name, from string, hasFrom bool, d digest) (bool, error) {
	if hasFrom {
		if !validName(from) || !r.store.repoHasBlob(from, d) {
			return false, nil
		}
	} else if !exists(r.store.blobPath(d)) {
		return false, nil
	}
	l, err := r.store.lock(false)
	if err != nil {
		return false, err
	}
	defer l.unlock()
	if !exists(r.store.blobPath(d)) {
		return false, nil
	}
	return true, r.linkBlob(ctx, name, d)
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
	u, err := r.loadUpload(name, id)
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
	r.removeUpload(id)
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
	if st, code, msg := r.appendChunk(req.Context(), id, u, req, true); st != 0 {
		if st == http.StatusRequestedRangeNotSatisfiable {
			setUploadHeaders(w, name, id, u.Offset)
			w.Header().Del("Content-Length")
		}
		return errf(st, code, msg)
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
	if st, code, msg := r.appendChunk(req.Context(), id, u, req, true); st != 0 {
		if st == http.StatusRequestedRangeNotSatisfiable {
			setUploadHeaders(w, name, id, u.Offset)
			w.Header().Del("Content-Length")
		}
		return errf(st, code, msg)
	}
	return r.finish(w, req, name, id, u, d)
}

var contentRangeRE = regexp.MustCompile(`^(?:bytes[ =])?([0-9]+)-([0-9]+)$`)

// appendChunk streams the request body onto the upload's data, hashing as it goes, and saves the new state.
// On failure the data is cut back to the last acknowledged offset and a status, error code and message are
// returned (status 0 means success).
func (r *Registry) appendChunk(ctx context.Context, id string, u *upload, req *http.Request, allowRange bool) (int, string, string) {
	limit := int64(-1)
	if cr := req.Header.Get("Content-Range"); cr != "" && allowRange {
		m := contentRangeRE.FindStringSubmatch(cr)
		if m == nil {
			return http.StatusBadRequest, codeBlobUploadInvalid, fmt.Sprintf("invalid Content-Range %q", cr)
		}
		start, err1 := strconv.ParseInt(m[1], 10, 64)
		end, err2 := strconv.ParseInt(m[2], 10, 64)
		if err1 != nil || err2 != nil || end < start {
			return http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, fmt.Sprintf("invalid Content-Range %q", cr)
		}
		if start != u.Offset {
			return http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
				fmt.Sprintf("chunk starts at %d, but the upload has %d bytes", start, u.Offset)
		}
		limit = end - start + 1
		if req.ContentLength >= 0 && req.ContentLength != limit {
			return http.StatusBadRequest, codeSizeInvalid,
				fmt.Sprintf("Content-Range %q covers %d bytes but Content-Length is %d", cr, limit, req.ContentLength)
		}
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA256); err != nil {
		return http.StatusInternalServerError, "UNKNOWN", "corrupt upload state"
	}
	path := filepath.Join(r.store.uploadDir(id), "data")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return http.StatusInternalServerError, "UNKNOWN", "opening upload"
	}
	defer f.Close()
	if _, err := f.Seek(u.Offset, io.SeekStart); err != nil {
		return http.StatusInternalServerError, "UNKNOWN", "seeking upload"
	}
	var body io.Reader = &ctxReader{ctx: ctx, r: req.Body}
	if limit >= 0 {
		body = io.LimitReader(body, limit+1)
	}
	n, err := copyHashed(f, u.Offset, h, body)
	fail := func(status int, code, msg string) (int, string, string) {
		f.Truncate(u.Offset)
		return status, code, msg
	}
	if isTimeout(err) {
		return fail(http.StatusRequestTimeout, codeBlobUploadInvalid, fmt.Sprintf(
			"reading chunk: cut off after %d bytes: bodies must arrive at %d bytes/s on average after %s, with no pause over %s",
			n, r.limits.minRate, r.limits.grace, r.limits.stall))
	}
	if err != nil {
		return fail(http.StatusBadRequest, codeBlobUploadInvalid, fmt.Sprintf("reading chunk: %v", err))
	}
	if limit >= 0 && n != limit {
		return fail(http.StatusBadRequest, codeSizeInvalid, fmt.Sprintf("chunk has %d bytes, Content-Range says %d", n, limit))
	}
	if req.ContentLength >= 0 && n != req.ContentLength {
		return fail(http.StatusBadRequest, codeSizeInvalid, fmt.Sprintf("chunk has %d bytes, Content-Length says %d", n, req.ContentLength))
	}
	if n == 0 {
		return 0, "", ""
	}
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fail(http.StatusInternalServerError, "UNKNOWN", "saving hash state")
	}
	// The saved state acknowledges these bytes and its hash covers them, so they must be durable first: a
	// crash otherwise leaves a session whose data falls short of its offset, or whose saved hash names bytes
	// the file no longer holds. (The fsync before commit then finds nothing left to write.)
	if err := f.Sync(); err != nil {
		return fail(http.StatusInternalServerError, "UNKNOWN", "syncing upload")
	}
	next := *u
	next.Offset += n
	next.SHA256 = st
	if err := r.saveUpload(ctx, id, &next); err != nil {
		return fail(http.StatusInternalServerError, "UNKNOWN", "saving upload state")
	}
	*u = next
	return 0, "", ""
}

// finish verifies the completed upload against d and moves it into blobs/. A mismatch deletes the session, so
// nothing of it is stored.
func (r *Registry) finish(w http.ResponseWriter, req *http.Request, name, id string, u *upload, d digest) error {
	ctx := req.Context()
	data := filepath.Join(r.store.uploadDir(id), "data")
	got, err := r.uploadDigest(ctx, data, u, d.alg)
	if err != nil {
		r.removeUpload(id)
		return err
	}
	if got != d {
		r.removeUpload(id)
		return errf(http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("content digest is %s, not %s", got, d))
	}
	if err := r.commitUpload(ctx, name, data, d); err != nil {
		r.removeUpload(id)
		return err
	}
	r.removeUpload(id)
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (r *Registry) commitUpload(ctx context.Context, name, data string, d digest) error {
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	l, err := r.store.lock(false)
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := r.store.commitBlob(data, d); err != nil {
		return err
	}
	return r.linkBlob(ctx, name, d)
}

// uploadDigest returns the digest of the upload's data: from the running sha256 state, or by reading the file
// again for sha512.
func (r *Registry) uploadDigest(ctx context.Context, data string, u *upload, alg string) (digest, error) {
	if alg == "sha256" {
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA256); err != nil {
			return digest{}, err
		}
		return digest{alg: alg, hex: hex.EncodeToString(h.Sum(nil))}, nil
	}
	d := digest{alg: alg}
	h := d.newHash()
	f, err := os.Open(data)
	if err != nil {
		return digest{}, err
	}
	defer f.Close()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		return digest{}, err
	}
	d.hex = hex.EncodeToString(h.Sum(nil))
	return d, nil
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
