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
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/ssf-dev/ssf/internal/durable"
)

// The store's upload sessions, and the order in which their bytes become durable: a chunk's data before the
// state that acknowledges it, a finished upload's data before the blob's name, the blob before the repository's
// link to it.

// upload is the persisted state of an upload session: uploads/<id>/state next to uploads/<id>/data.
type upload struct {
	Repo    string `json:"repo"`
	Offset  int64  `json:"offset"`
	SHA256  []byte `json:"sha256"` // the running hash's marshalled state after Offset bytes
	Started int64  `json:"started"`
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (s *store) uploadData(id string) string { return filepath.Join(s.uploadDir(id), "data") }

// newUpload creates a session of repository name, durably, and returns its id.
func (s *store) newUpload(ctx context.Context, name string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	if err := durable.MkdirAll(s.uploadDir(id), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(s.uploadData(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	f.Close()
	st, err := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return "", err
	}
	u := upload{Repo: name, SHA256: st, Started: time.Now().UnixNano()}
	// The state's directory sync also makes the data file's name durable.
	if err := s.saveUpload(ctx, id, &u); err != nil {
		return "", err
	}
	return id, nil
}

// saveUpload replaces the session's state durably.
func (s *store) saveUpload(ctx context.Context, id string, u *upload) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return durable.Replace(filepath.Join(s.uploadDir(id), "state"), b, 0o600)
}

// loadUpload reads a session; it returns nil when there is none for this repository. Bytes beyond the saved
// offset (a crash between writing data and saving state) were never acknowledged and are cut off.
func (s *store) loadUpload(name, id string) (*upload, error) {
	if !uploadIDRE.MatchString(id) {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(s.uploadDir(id), "state"))
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
	data := s.uploadData(id)
	fi, err := os.Stat(data)
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		// The data was committed as a blob (a hard link: see commitUpload) and the process stopped before the
		// session was removed. Writing to it now would change a stored blob's bytes, so the session is over.
		s.removeUpload(id)
		return nil, nil
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

func (s *store) removeUpload(id string) {
	os.RemoveAll(s.uploadDir(id))
}

// bodyError is a failure reading a chunk from the client (cut off, too slow, malformed), as opposed to one
// storing it.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "reading chunk: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// chunkSizeError: the chunk had a different length than the request declared.
type chunkSizeError struct{ got int64 }

func (e *chunkSizeError) Error() string { return fmt.Sprintf("chunk has %d bytes", e.got) }

// appendUpload streams body onto the session's data, hashing as it goes; want is the chunk's declared length,
// or -1. Only once the bytes are durable is the state that acknowledges them (and whose running hash covers
// them) saved: a crash otherwise leaves a session whose data falls short of its offset, or whose saved hash
// names bytes the file no longer holds. It returns the bytes read; on any error the data is cut back to
// u.Offset and u is unchanged, and errors reading body are a *bodyError or *chunkSizeError.
func (s *store) appendUpload(ctx context.Context, id string, u *upload, body io.Reader, want int64) (int64, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA256); err != nil {
		return 0, fmt.Errorf("upload %s: corrupt hash state: %w", id, err)
	}
	f, err := os.OpenFile(s.uploadData(id), os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(u.Offset, io.SeekStart); err != nil {
		return 0, err
	}
	body = &ctxReader{ctx: ctx, r: body}
	if want >= 0 {
		body = io.LimitReader(body, want+1)
	}
	n, err := copyHashed(f, u.Offset, h, body)
	if err == nil && want >= 0 && n != want {
		err = &chunkSizeError{got: n}
	} else if err != nil {
		err = &bodyError{err}
	}
	if err == nil && n > 0 {
		err = s.acknowledge(ctx, id, u, f, n, h)
	}
	if err != nil {
		f.Truncate(u.Offset)
		return n, err
	}
	return n, nil
}

// acknowledge makes n bytes appended to the session's data file f durable, then the state that counts them.
func (s *store) acknowledge(ctx context.Context, id string, u *upload, f *os.File, n int64, h io.Writer) error {
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("saving hash state: %w", err)
	}
	// (The fsync before commit then finds nothing left to write.)
	if err := durable.Sync(f); err != nil {
		return err
	}
	next := *u
	next.Offset += n
	next.SHA256 = st
	if err := s.saveUpload(ctx, id, &next); err != nil {
		return err
	}
	*u = next
	return nil
}

// uploadDigest returns the digest of the upload's data: from the running sha256 state, or by reading the file
// again for sha512.
func (s *store) uploadDigest(ctx context.Context, id string, u *upload, alg string) (digest, error) {
	if alg == "sha256" {
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.SHA256); err != nil {
			return digest{}, err
		}
		return digest{alg: alg, hex: hex.EncodeToString(h.Sum(nil))}, nil
	}
	d := digest{alg: alg}
	h := d.newHash()
	f, err := os.Open(s.uploadData(id))
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

// commitUpload makes the session's verified data durable as blob d, then the repository's link to it, under
// the shared lock so GC cannot sweep the blob in between. The blob is a hard link to the session's data file,
// so the session is over once it returns: the caller removes it, and loadUpload refuses a session whose data
// is linked elsewhere (a crash before the removal), which would otherwise append to a stored blob.
func (s *store) commitUpload(ctx context.Context, name, id string, d digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := s.lock(false)
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := s.commitBlob(s.uploadData(id), d); err != nil {
		return err
	}
	return s.linkBlob(name, d)
}
