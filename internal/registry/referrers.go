package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Bounds on the referrers API. Anyone who may push can attach referrers with large annotations to any subject;
// without bounds one GET built a 126 MB response, and clients that cap what they read could then no longer see a
// subject's signatures at all.
const (
	// maxReferrerAnnotations bounds the annotations one descriptor carries in the referrers list (their keys and
	// values together). Annotations that do not fit are left out (the smallest are kept first): the referrer
	// itself is still listed, and its manifest still holds all of them.
	maxReferrerAnnotations = 16 << 10
	// defaultReferrersPage bounds one referrers response; more referrers are served on further pages, linked
	// with a Link header (rel="next") as the distribution spec allows.
	defaultReferrersPage = 256 << 10
	// maxReferrerRecord is the largest referrer record read back. Records are written bounded (annotations,
	// media types), well below it even with every byte JSON-escaped; a larger one was written before those
	// bounds and is skipped, like one with an unbounded media type: reading it on every listing let a single
	// pushed referrer cost megabytes per request (3 GB for 500 slow anonymous readers).
	maxReferrerRecord = 256 << 10
	// referrersBatch is how many record names a listing reads from the directory at a time.
	referrersBatch = 1024
)

// referrerDescriptor is the descriptor listed for a referrer: the manifest's, with its annotations bounded.
func referrerDescriptor(mediaType string, d digest, size int64, artifactType string, annotations map[string]string) descriptor {
	return descriptor{MediaType: mediaType, Digest: d.String(), Size: size, ArtifactType: artifactType,
		Annotations: boundAnnotations(annotations)}
}

// boundAnnotations keeps annotations while their keys and values total at most maxReferrerAnnotations bytes,
// taking the smallest first (ties by key) so that the many small, useful ones survive one huge one.
func boundAnnotations(a map[string]string) map[string]string {
	total := 0
	for k, v := range a {
		total += len(k) + len(v)
	}
	if total <= maxReferrerAnnotations {
		return a
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		if c := (len(x) + len(a[x])) - (len(y) + len(a[y])); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	out := map[string]string{}
	used := 0
	for _, k := range keys {
		n := len(k) + len(a[k])
		if used+n > maxReferrerAnnotations {
			break
		}
		out[k] = a[k]
		used += n
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// listReferrers answers one page of the subject's referrers. Records are read one at a time in name order and
// the page ends before the one that would take it past the page size, so memory stays bounded whatever was
// pushed; "last" (set by the server in the Link header it sends) resumes after a record.
func (r *Registry) listReferrers(w http.ResponseWriter, req *http.Request, name, reference string) error {
	subject, err := parseDigest(reference)
	if err != nil {
		return errf(http.StatusBadRequest, codeDigestInvalid, err.Error())
	}
	q := req.URL.Query()
	filter, filtered := q.Get("artifactType"), q.Has("artifactType")
	dir := r.store.referrersDir(name, subject)
	pageBytes := r.referrersPage
	if pageBytes <= 0 {
		pageBytes = defaultReferrersPage
	}
	out := index{SchemaVersion: 2, MediaType: mediaTypeOCIIndex, Manifests: []descriptor{}}
	size := len(`{"schemaVersion":2,"mediaType":"","manifests":[]}`) + len(mediaTypeOCIIndex)
	next := ""
	// Record names are read a batch at a time (a pusher may attach any number of referrers), resuming after
	// the last one seen, until the page is full.
	after, more := q.Get("last"), true
	notTemp := func(e fs.DirEntry) bool { return !strings.HasPrefix(e.Name(), ".") }
page:
	for more && next == "" {
		var names []string
		names, more, err = firstNames(dir, after, referrersBatch, notTemp)
		if err != nil {
			return err
		}
		for _, rec := range names {
			after = rec
			if filtered {
				// Most records of a subject flooded with referrers are of other types: tell from the
				// record's start (the artifactType precedes the annotations) without reading them all.
				if at, ok := recordArtifactType(filepath.Join(dir, rec)); ok && at != filter {
					continue
				}
			}
			desc, ok, err := r.readReferrer(filepath.Join(dir, rec))
			if err != nil {
				return fmt.Errorf("referrer record %q: %w", rec, err)
			}
			// A record whose manifest link is gone (a crash during delete) is not a referrer any more.
			if !ok {
				continue
			}
			if d, err := parseDigest(desc.Digest); err != nil || !exists(r.store.manifestLink(name, d)) {
				continue
			}
			if filtered && desc.ArtifactType != filter {
				continue
			}
			b, err := json.Marshal(desc)
			if err != nil {
				return err
			}
			if len(out.Manifests) > 0 && size+len(b)+1 > pageBytes {
				next = out.Manifests[len(out.Manifests)-1].Digest
				break page
			}
			out.Manifests = append(out.Manifests, desc)
			size += len(b) + 1
		}
	}
	if filtered {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if next != "" {
		d, _ := parseDigest(next)
		v := url.Values{"last": {d.alg + "-" + d.hex}}
		if filtered {
			v.Set("artifactType", filter)
		}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/referrers/%s?%s>; rel="next"`, name, subject, v.Encode()))
	}
	return writeJSON(w, req, mediaTypeOCIIndex, out)
}

// readReferrer reads one record and bounds its annotations; ok is false when the record names no valid digest
// or is larger than this version writes them.
func (r *Registry) readReferrer(path string) (descriptor, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return descriptor{}, false, nil // deleted meanwhile
	}
	if err != nil {
		return descriptor{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReferrerRecord+1))
	if err != nil {
		return descriptor{}, false, err
	}
	if len(b) > maxReferrerRecord {
		return descriptor{}, false, nil
	}
	var desc descriptor
	if err := json.Unmarshal(b, &desc); err != nil {
		return descriptor{}, false, err
	}
	d, err := parseDigest(desc.Digest)
	if err != nil || len(desc.MediaType) > maxMediaTypeLen || len(desc.ArtifactType) > maxMediaTypeLen {
		return descriptor{}, false, nil
	}
	return referrerDescriptor(desc.MediaType, d, desc.Size, desc.ArtifactType, desc.Annotations), true, nil
}

// recordPrefix is how much of a record recordArtifactType reads: its fields before the annotations (media type
// and artifactType at most maxMediaTypeLen each, digest, size) fit with room to spare.
const recordPrefix = 2 << 10

// recordArtifactType reads the artifactType of the referrer record at path from the record's start; ok is false
// when that start does not tell (the record is then read whole). A filtered listing over 20,000 records with
// 16 KiB of annotations each took 4.9 s of CPU per anonymous request when every record was decoded whole.
func recordArtifactType(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b := make([]byte, recordPrefix)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(b[:n]))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch t {
		case "artifactType":
			var at string
			if err := dec.Decode(&at); err != nil {
				return "", false
			}
			return at, true
		case "annotations":
			return "", true // written after artifactType, which is omitted when empty
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", true
}
