package registry

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testRegistry is a real registry on a loopback httptest server.
type testRegistry struct {
	t   *testing.T
	reg *Registry
	srv *httptest.Server
	dir string
	// user and pass, when set, are sent as basic auth.
	user, pass string
}

func newTestRegistry(t *testing.T, opts ...Option) *testRegistry {
	t.Helper()
	dir := t.TempDir()
	if len(opts) == 0 {
		opts = []Option{WithInsecureLocalPushUnsafe(), WithAnonymousPull(true)}
	}
	reg, err := New(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return &testRegistry{t: t, reg: reg, srv: srv, dir: dir}
}

func (tr *testRegistry) do(method, path string, body io.Reader, hdr ...string) *http.Response {
	tr.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = tr.srv.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		tr.t.Fatal(err)
	}
	if b, ok := body.(*bytes.Reader); ok && b.Len() == 0 {
		req.ContentLength = 0
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if tr.user != "" {
		req.SetBasicAuth(tr.user, tr.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	return resp
}

// expect checks a response's status and, for errors, the spec error code, and returns its body.
func expect(t *testing.T, resp *http.Response, status int, code string) []byte {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	if code != "" {
		var eb errorBody
		if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
			t.Fatalf("%s %s: body %q is not a spec error", resp.Request.Method, resp.Request.URL.Path, body)
		}
		if eb.Errors[0].Code != code {
			t.Fatalf("%s %s: error code %s, want %s (%s)", resp.Request.Method, resp.Request.URL.Path, eb.Errors[0].Code, code, eb.Errors[0].Message)
		}
	}
	return body
}

func sha(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func (tr *testRegistry) pushBlob(repo string, data []byte) string {
	tr.t.Helper()
	d := sha(data)
	expect(tr.t, tr.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d, bytes.NewReader(data)), http.StatusCreated, "")
	return d
}

func (tr *testRegistry) pushManifest(repo, ref string, m any) (string, *http.Response) {
	tr.t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		tr.t.Fatal(err)
	}
	return sha(b), tr.do("PUT", "/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b), "Content-Type", mediaTypeOCIManifest)
}

// image builds an OCI image manifest over pushed config and layer blobs.
func image(config string, configSize int, layers map[string]int, extra map[string]any) map[string]any {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeOCIManifest,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": configSize},
	}
	ls := []any{}
	keys := make([]string, 0, len(layers))
	for k := range layers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, d := range keys {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": layers[d]})
	}
	m["layers"] = ls
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// storedFiles lists the regular files under the registry directory, except the GC lock.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && e.Name() != "gc.lock" {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestPushPullImage(t *testing.T) {
	tr := newTestRegistry(t)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := bytes.Repeat([]byte("layer"), 1000)
	cd, ld := tr.pushBlob("team/app", config), tr.pushBlob("team/app", layer)
	md, resp := tr.pushManifest("team/app", "v1", image(cd, len(config), map[string]int{ld: len(layer)}, nil))
	expect(t, resp, http.StatusCreated, "")
	if got := resp.Header.Get("Docker-Content-Digest"); got != md {
		t.Fatalf("Docker-Content-Digest %q, want %q", got, md)
	}
	for _, ref := range []string{"v1", md} {
		resp := tr.do("GET", "/v2/team/app/manifests/"+ref, nil)
		body := expect(t, resp, http.StatusOK, "")
		if sha(body) != md || resp.Header.Get("Content-Type") != mediaTypeOCIManifest {
			t.Fatalf("GET manifest %s: digest %s, type %q", ref, sha(body), resp.Header.Get("Content-Type"))
		}
		resp = tr.do("HEAD", "/v2/team/app/manifests/"+ref, nil)
		expect(t, resp, http.StatusOK, "")
		if resp.ContentLength <= 0 || resp.Header.Get("Docker-Content-Digest") != md {
			t.Fatalf("HEAD manifest: length %d digest %q", resp.ContentLength, resp.Header.Get("Docker-Content-Digest"))
		}
	}
	if got := expect(t, tr.do("GET", "/v2/team/app/blobs/"+ld, nil), http.StatusOK, ""); !bytes.Equal(got, layer) {
		t.Fatal("layer bytes differ")
	}
}

func TestBadInputStoresNothing(t *testing.T) {
	blob := []byte("some blob content")
	good := sha(blob)
	wrong := sha([]byte("other content"))
	big := make([]byte, MaxManifestSize+10)
	for i := range big {
		big[i] = ' '
	}
	copy(big, `{"schemaVersion":2}`)
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		hdr    []string
		status int
		code   string
	}{
		{"wrong digest", "POST", "/v2/r/blobs/uploads/?digest=" + wrong, blob, nil, 400, codeDigestInvalid},
		{"malformed digest", "POST", "/v2/r/blobs/uploads/?digest=sha256:xyz", blob, nil, 400, codeDigestInvalid},
		{"unsupported algorithm", "POST", "/v2/r/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e", blob, nil, 400, codeDigestInvalid},
		{"oversized manifest", "PUT", "/v2/r/manifests/v1", big, []string{"Content-Type", mediaTypeOCIManifest}, 413, codeSizeInvalid},
		{"manifest not JSON", "PUT", "/v2/r/manifests/v1", []byte("{"), []string{"Content-Type", mediaTypeOCIManifest}, 400, codeManifestInvalid},
		{"manifest missing blobs", "PUT", "/v2/r/manifests/v1",
			mustJSON(image(good, len(blob), map[string]int{wrong: 3}, nil)), []string{"Content-Type", mediaTypeOCIManifest}, 400, codeManifestBlobUnknown},
		{"manifest wrong digest", "PUT", "/v2/r/manifests/" + wrong, []byte(`{"schemaVersion":2}`), []string{"Content-Type", mediaTypeOCIManifest}, 400, codeDigestInvalid},
		{"manifest media type mismatch", "PUT", "/v2/r/manifests/v1", mustJSON(map[string]any{"schemaVersion": 2, "mediaType": mediaTypeOCIIndex, "manifests": []any{}}),
			[]string{"Content-Type", mediaTypeOCIManifest}, 400, codeManifestInvalid},
		{"manifest unknown media type", "PUT", "/v2/r/manifests/v1", []byte(`{"schemaVersion":2}`), []string{"Content-Type", "text/plain"}, 400, codeManifestInvalid},
		{"invalid tag", "PUT", "/v2/r/manifests/-bad", []byte(`{}`), []string{"Content-Type", mediaTypeOCIManifest}, 400, codeManifestInvalid},
		{"invalid tag param", "PUT", "/v2/r/manifests/" + wrong + "?tag=..", []byte(`{}`), []string{"Content-Type", mediaTypeOCIManifest}, 400, codeManifestInvalid},
		{"name with ..", "POST", "/v2/../x/blobs/uploads/?digest=" + good, blob, nil, 400, codeNameInvalid},
		{"name escaping", "POST", "/v2/a/../../b/blobs/uploads/?digest=" + good, blob, nil, 400, codeNameInvalid},
		{"upper-case name", "POST", "/v2/Team/app/blobs/uploads/?digest=" + good, blob, nil, 400, codeNameInvalid},
		{"empty component", "POST", "/v2/a//b/blobs/uploads/?digest=" + good, blob, nil, 400, codeNameInvalid},
		{"encoded slash dots", "GET", "/v2/a/%2e%2e/b/tags/list", nil, nil, 400, codeNameInvalid},
		{"unknown upload patch", "PATCH", "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef", blob, nil, 404, codeBlobUploadUnknown},
		{"unknown upload put", "PUT", "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef?digest=" + good, blob, nil, 404, codeBlobUploadUnknown},
		{"unknown upload get", "GET", "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef", nil, nil, 404, codeBlobUploadUnknown},
		{"upload id traversal", "PUT", "/v2/r/blobs/uploads/..?digest=" + good, blob, nil, 404, codeBlobUploadUnknown},
		{"unknown blob", "GET", "/v2/r/blobs/" + good, nil, nil, 404, codeBlobUnknown},
		{"unknown manifest", "GET", "/v2/r/manifests/" + good, nil, nil, 404, codeManifestUnknown},
		{"unknown tag", "GET", "/v2/r/manifests/nope", nil, nil, 404, codeManifestUnknown},
		// Issue 6 A21: a syntactically invalid tag names nothing, so a pull answers 404 (not 400).
		{"invalid tag get", "GET", "/v2/r/manifests/-bad", nil, nil, 404, codeManifestUnknown},
		{"invalid tag head", "HEAD", "/v2/r/manifests/.bad", nil, nil, 404, ""},
		{"unknown repository tags", "GET", "/v2/nope/tags/list", nil, nil, 404, codeNameUnknown},
		{"referrers bad digest", "GET", "/v2/r/referrers/sha256:abc", nil, nil, 400, codeDigestInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := newTestRegistry(t)
			before := storedFiles(t, tr.dir)
			var body io.Reader
			if c.body != nil {
				body = bytes.NewReader(c.body)
			}
			expect(t, tr.do(c.method, c.path, body, c.hdr...), c.status, c.code)
			if after := storedFiles(t, tr.dir); !slices.Equal(before, after) {
				t.Fatalf("files changed: before %v, after %v", before, after)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(tr.dir), "x")); err == nil {
				t.Fatal("a path escaped the registry directory")
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestUploadFailuresStoreNothing(t *testing.T) {
	tr := newTestRegistry(t)
	blob := bytes.Repeat([]byte("0123456789"), 10)
	start := func() string {
		resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
		expect(t, resp, http.StatusAccepted, "")
		return resp.Header.Get("Location")
	}
	// A truncated upload: the data sent is a prefix of the blob the digest names.
	loc := start()
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob[:50])), http.StatusAccepted, "")
	expect(t, tr.do("PUT", loc+"?digest="+sha(blob), nil), http.StatusBadRequest, codeDigestInvalid)
	// The session is gone after a failed finish.
	expect(t, tr.do("GET", loc, nil), http.StatusNotFound, codeBlobUploadUnknown)
	// Content-Range that disagrees with the body's length.
	loc = start()
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob[:50]), "Content-Range", "0-99"), http.StatusBadRequest, codeSizeInvalid)
	resp := tr.do("GET", loc, nil)
	expect(t, resp, http.StatusNoContent, "")
	if got := resp.Header.Get("Range"); got != "0-0" {
		t.Fatalf("Range after a rejected chunk = %q, want 0-0", got)
	}
	// Upload sessions belong to one repository.
	expect(t, tr.do("GET", strings.Replace(loc, "/v2/r/", "/v2/other/", 1), nil), http.StatusNotFound, codeBlobUploadUnknown)
	// The missing digest on finish.
	expect(t, tr.do("PUT", loc, nil), http.StatusBadRequest, codeDigestInvalid)
	expect(t, tr.do("HEAD", "/v2/r/blobs/"+sha(blob), nil), http.StatusNotFound, "")
	if _, err := os.Stat(filepath.Join(tr.dir, "blobs", "sha256", strings.TrimPrefix(sha(blob), "sha256:"))); err == nil {
		t.Fatal("a rejected blob was stored")
	}
	// Cancel.
	expect(t, tr.do("DELETE", loc, nil), http.StatusNoContent, "")
	expect(t, tr.do("GET", loc, nil), http.StatusNotFound, codeBlobUploadUnknown)
}

func TestChunkedUpload(t *testing.T) {
	tr := newTestRegistry(t)
	blob := bytes.Repeat([]byte("abcdefghij"), 3)
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	resp = tr.do("PATCH", loc, bytes.NewReader(blob[:10]), "Content-Range", "0-9")
	expect(t, resp, http.StatusAccepted, "")
	if resp.Header.Get("Range") != "0-9" {
		t.Fatalf("Range %q, want 0-9", resp.Header.Get("Range"))
	}
	loc = resp.Header.Get("Location")
	// Out of order: skips bytes 10-19.
	resp = tr.do("PATCH", loc, bytes.NewReader(blob[20:]), "Content-Range", "20-29")
	expect(t, resp, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid)
	if resp.Header.Get("Range") != "0-9" || resp.Header.Get("Location") == "" {
		t.Fatalf("416 headers: Range %q Location %q", resp.Header.Get("Range"), resp.Header.Get("Location"))
	}
	// Back to the start, also out of order.
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob[:10]), "Content-Range", "0-9"), http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid)
	resp = tr.do("GET", loc, nil)
	expect(t, resp, http.StatusNoContent, "")
	if resp.Header.Get("Range") != "0-9" {
		t.Fatalf("status Range %q, want 0-9", resp.Header.Get("Range"))
	}
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob[10:20]), "Content-Range", "10-19"), http.StatusAccepted, "")
	// The last chunk comes with the PUT.
	resp = tr.do("PUT", loc+"?digest="+sha(blob), bytes.NewReader(blob[20:]), "Content-Range", "20-29")
	expect(t, resp, http.StatusCreated, "")
	if got := expect(t, tr.do("GET", resp.Header.Get("Location"), nil), http.StatusOK, ""); !bytes.Equal(got, blob) {
		t.Fatalf("got %q", got)
	}
}

func TestSHA512(t *testing.T) {
	tr := newTestRegistry(t)
	blob := []byte("sha512 content")
	d := fmt.Sprintf("sha512:%x", sha512.Sum512(blob))
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob)), http.StatusAccepted, "")
	expect(t, tr.do("PUT", loc+"?digest="+d, nil), http.StatusCreated, "")
	if got := expect(t, tr.do("GET", "/v2/r/blobs/"+d, nil), http.StatusOK, ""); !bytes.Equal(got, blob) {
		t.Fatal("sha512 blob differs")
	}
}

func TestBlobHeadAndRange(t *testing.T) {
	tr := newTestRegistry(t)
	blob := make([]byte, 2048)
	for i := range blob {
		blob[i] = byte(i)
	}
	d := tr.pushBlob("r", blob)
	resp := tr.do("HEAD", "/v2/r/blobs/"+d, nil)
	if b := expect(t, resp, http.StatusOK, ""); len(b) != 0 || resp.ContentLength != 2048 || resp.Header.Get("Docker-Content-Digest") != d {
		t.Fatalf("HEAD: body %d bytes, length %d, digest %q", len(b), resp.ContentLength, resp.Header.Get("Docker-Content-Digest"))
	}
	cases := []struct {
		rng, contentRange string
		status            int
		want              []byte
	}{
		{"bytes=500-1499", "bytes 500-1499/2048", 206, blob[500:1500]},
		{"bytes=500-", "bytes 500-2047/2048", 206, blob[500:]},
		{"bytes=-500", "bytes 1548-2047/2048", 206, blob[1548:]},
		{"bytes=2000-5000", "bytes 2000-2047/2048", 206, blob[2000:]},
		{"bytes=500-0", "", 416, nil},
		{"bytes=5000-10000", "", 416, nil},
	}
	for _, c := range cases {
		resp := tr.do("GET", "/v2/r/blobs/"+d, nil, "Range", c.rng)
		got := expect(t, resp, c.status, "")
		if c.status == 206 && (!bytes.Equal(got, c.want) || resp.Header.Get("Content-Range") != c.contentRange) {
			t.Errorf("Range %s: Content-Range %q, %d bytes", c.rng, resp.Header.Get("Content-Range"), len(got))
		}
	}
}

func TestTagPagination(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := []byte("{}")
	cd := tr.pushBlob("r", cfg)
	tags := []string{"a", "b", "c", "d", "e"}
	for _, tag := range slices.Backward(tags) {
		_, resp := tr.pushManifest("r", tag, image(cd, len(cfg), nil, nil))
		expect(t, resp, http.StatusCreated, "")
	}
	list := func(q string) ([]string, string) {
		resp := tr.do("GET", "/v2/r/tags/list"+q, nil)
		var tl tagList
		if err := json.Unmarshal(expect(t, resp, http.StatusOK, ""), &tl); err != nil {
			t.Fatal(err)
		}
		return tl.Tags, resp.Header.Get("Link")
	}
	if got, link := list(""); !slices.Equal(got, tags) || link != "" {
		t.Fatalf("all tags: %v link %q", got, link)
	}
	got, link := list("?n=2")
	if !slices.Equal(got, []string{"a", "b"}) || link != `</v2/r/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("n=2: %v link %q", got, link)
	}
	if got, link := list("?n=2&last=b"); !slices.Equal(got, []string{"c", "d"}) || link == "" {
		t.Fatalf("n=2&last=b: %v link %q", got, link)
	}
	if got, link := list("?n=2&last=d"); !slices.Equal(got, []string{"e"}) || link != "" {
		t.Fatalf("n=2&last=d: %v link %q", got, link)
	}
	if got, _ := list("?n=0"); len(got) != 0 {
		t.Fatalf("n=0: %v", got)
	}
	expect(t, tr.do("GET", "/v2/r/tags/list?n=x", nil), http.StatusBadRequest, codeUnsupported)
}

func TestReferrers(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := []byte("{}")
	cd := tr.pushBlob("r", cfg)
	subject, resp := tr.pushManifest("r", "v1", image(cd, len(cfg), nil, nil))
	expect(t, resp, http.StatusCreated, "")
	subjDesc := map[string]any{"mediaType": mediaTypeOCIManifest, "digest": subject, "size": 10}
	var sig string
	for _, at := range []string{"application/vnd.example.sig", "application/vnd.example.sbom"} {
		d, resp := tr.pushManifest("r", "x"+strings.ReplaceAll(at[len("application/vnd.example."):], ".", ""),
			image(cd, len(cfg), nil, map[string]any{"artifactType": at, "subject": subjDesc, "annotations": map[string]string{"k": at}}))
		expect(t, resp, http.StatusCreated, "")
		if resp.Header.Get("OCI-Subject") != subject {
			t.Fatalf("OCI-Subject %q, want %q", resp.Header.Get("OCI-Subject"), subject)
		}
		if strings.HasSuffix(at, "sig") {
			sig = d
		}
	}
	get := func(q string) (index, *http.Response) {
		resp := tr.do("GET", "/v2/r/referrers/"+subject+q, nil)
		var idx index
		if err := json.Unmarshal(expect(t, resp, http.StatusOK, ""), &idx); err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Content-Type") != mediaTypeOCIIndex || idx.MediaType != mediaTypeOCIIndex || idx.SchemaVersion != 2 {
			t.Fatalf("referrers response is not an OCI index: %+v", idx)
		}
		return idx, resp
	}
	if idx, resp := get(""); len(idx.Manifests) != 2 || resp.Header.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("referrers: %+v", idx)
	}
	idx, resp := get("?artifactType=application/vnd.example.sig")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig || idx.Manifests[0].Annotations["k"] != "application/vnd.example.sig" ||
		resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %+v, header %q", idx, resp.Header.Get("OCI-Filters-Applied"))
	}
	// A subject that does not exist is allowed; its referrers list is served.
	missing := sha([]byte("not pushed"))
	_, resp = tr.pushManifest("r", "dangling", image(cd, len(cfg), nil, map[string]any{"subject": map[string]any{"mediaType": mediaTypeOCIManifest, "digest": missing, "size": 1}}))
	expect(t, resp, http.StatusCreated, "")
	if resp.Header.Get("OCI-Subject") != missing {
		t.Fatal("no OCI-Subject for a missing subject")
	}
	// Deleting a referrer removes it from the list.
	expect(t, tr.do("DELETE", "/v2/r/manifests/"+sig, nil), http.StatusAccepted, "")
	if idx, _ := get(""); len(idx.Manifests) != 1 || idx.Manifests[0].Digest == sig {
		t.Fatalf("after delete: %+v", idx)
	}
	if idx, _ := get("?artifactType=none"); len(idx.Manifests) != 0 {
		t.Fatalf("unknown artifactType: %+v", idx)
	}
}

func TestMountAndDelete(t *testing.T) {
	tr := newTestRegistry(t)
	blob := []byte("shared layer")
	d := tr.pushBlob("src", blob)
	// Mount from a repository that has it.
	resp := tr.do("POST", "/v2/dst/blobs/uploads/?mount="+d+"&from=src", nil)
	expect(t, resp, http.StatusCreated, "")
	if resp.Header.Get("Location") != "/v2/dst/blobs/"+d {
		t.Fatalf("mount Location %q", resp.Header.Get("Location"))
	}
	// From a repository that does not have it: an ordinary upload session instead.
	resp = tr.do("POST", "/v2/third/blobs/uploads/?mount="+d+"&from=empty", nil)
	expect(t, resp, http.StatusAccepted, "")
	if !strings.HasPrefix(resp.Header.Get("Location"), "/v2/third/blobs/uploads/") {
		t.Fatalf("fallback Location %q", resp.Header.Get("Location"))
	}
	expect(t, tr.do("HEAD", "/v2/third/blobs/"+d, nil), http.StatusNotFound, "")
	// Deleting in one repository leaves the other's.
	expect(t, tr.do("DELETE", "/v2/src/blobs/"+d, nil), http.StatusAccepted, "")
	expect(t, tr.do("HEAD", "/v2/src/blobs/"+d, nil), http.StatusNotFound, "")
	expect(t, tr.do("DELETE", "/v2/src/blobs/"+d, nil), http.StatusNotFound, codeBlobUnknown)
	if got := expect(t, tr.do("GET", "/v2/dst/blobs/"+d, nil), http.StatusOK, ""); !bytes.Equal(got, blob) {
		t.Fatal("mounted blob differs")
	}
	// Manifest deletion by digest removes its tags; deleting a tag keeps the manifest.
	cfg := []byte("{}")
	cd := tr.pushBlob("dst", cfg)
	md, resp := tr.pushManifest("dst", "one", image(cd, len(cfg), map[string]int{d: len(blob)}, nil))
	expect(t, resp, http.StatusCreated, "")
	_, resp = tr.pushManifest("dst", "two", image(cd, len(cfg), map[string]int{d: len(blob)}, nil))
	expect(t, resp, http.StatusCreated, "")
	expect(t, tr.do("DELETE", "/v2/dst/manifests/one", nil), http.StatusAccepted, "")
	expect(t, tr.do("GET", "/v2/dst/manifests/one", nil), http.StatusNotFound, codeManifestUnknown)
	expect(t, tr.do("GET", "/v2/dst/manifests/two", nil), http.StatusOK, "")
	expect(t, tr.do("DELETE", "/v2/dst/manifests/"+md, nil), http.StatusAccepted, "")
	expect(t, tr.do("GET", "/v2/dst/manifests/two", nil), http.StatusNotFound, codeManifestUnknown)
	expect(t, tr.do("GET", "/v2/dst/manifests/"+md, nil), http.StatusNotFound, codeManifestUnknown)
	expect(t, tr.do("DELETE", "/v2/dst/manifests/"+md, nil), http.StatusNotFound, codeManifestUnknown)
}

func TestIndexNeedsChildren(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := []byte("{}")
	cd := tr.pushBlob("r", cfg)
	child, resp := tr.pushManifest("r", "child", image(cd, len(cfg), nil, nil))
	expect(t, resp, http.StatusCreated, "")
	size := len(mustJSON(image(cd, len(cfg), nil, nil)))
	idx := func(d string) []byte {
		return mustJSON(map[string]any{"schemaVersion": 2, "mediaType": mediaTypeOCIIndex,
			"manifests": []any{map[string]any{"mediaType": mediaTypeOCIManifest, "digest": d, "size": size}}})
	}
	expect(t, tr.do("PUT", "/v2/r/manifests/idx", bytes.NewReader(idx(sha([]byte("x")))), "Content-Type", mediaTypeOCIIndex), 400, codeManifestBlobUnknown)
	expect(t, tr.do("PUT", "/v2/other/manifests/idx", bytes.NewReader(idx(child)), "Content-Type", mediaTypeOCIIndex), 400, codeManifestBlobUnknown)
	expect(t, tr.do("PUT", "/v2/r/manifests/idx", bytes.NewReader(idx(child)), "Content-Type", mediaTypeOCIIndex), 201, "")
}

func TestAuth(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := AddUser(t.Context(), users, "ci", []byte("correct horse battery")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(users); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode: %v %v", fi.Mode(), err)
	}
	blob := []byte("authenticated content")
	for _, anon := range []bool{false, true} {
		t.Run(fmt.Sprintf("anonymousPull=%v", anon), func(t *testing.T) {
			tr := newTestRegistry(t, WithUsersFile(users), WithAnonymousPull(anon))
			push := func() *http.Response {
				return tr.do("POST", "/v2/r/blobs/uploads/?digest="+sha(blob), bytes.NewReader(blob))
			}
			resp := push()
			expect(t, resp, http.StatusUnauthorized, codeUnauthorized)
			if resp.Header.Get("WWW-Authenticate") != `Basic realm="ssf"` {
				t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			tr.user, tr.pass = "ci", "wrong password!"
			expect(t, push(), http.StatusUnauthorized, codeUnauthorized)
			tr.user = "nobody"
			expect(t, push(), http.StatusUnauthorized, codeUnauthorized)
			if files := storedFiles(t, filepath.Join(tr.dir, "blobs")); len(files) != 0 {
				t.Fatalf("unauthenticated push stored %v", files)
			}
			tr.user, tr.pass = "ci", "correct horse battery"
			expect(t, push(), http.StatusCreated, "")
			expect(t, tr.do("GET", "/v2/r/blobs/"+sha(blob), nil), http.StatusOK, "")
			tr.user = ""
			want := http.StatusUnauthorized
			if anon {
				want = http.StatusOK
			}
			expect(t, tr.do("GET", "/v2/r/blobs/"+sha(blob), nil), want, "")
			expect(t, tr.do("GET", "/v2/", nil), want, "")
		})
	}
	t.Run("credentials need TLS or loopback", func(t *testing.T) {
		reg, err := New(t.TempDir(), WithUsersFile(users))
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/v2/", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		req.SetBasicAuth("ci", "correct horse battery")
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("basic auth over plain HTTP from a remote client: %d", rec.Code)
		}
	})
	t.Run("insecure local push is loopback only", func(t *testing.T) {
		reg, err := New(t.TempDir(), WithInsecureLocalPushUnsafe())
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", "/v2/r/blobs/uploads/", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("unauthenticated remote push: %d", rec.Code)
		}
	})
	t.Run("no users file means no push", func(t *testing.T) {
		tr := newTestRegistry(t, WithAnonymousPull(true))
		expect(t, tr.do("POST", "/v2/r/blobs/uploads/", nil), http.StatusUnauthorized, codeUnauthorized)
	})
	if err := AddUser(t.Context(), users, "ci", []byte("short")); err == nil {
		t.Fatal("AddUser accepted a short password")
	}
	if err := AddUser(t.Context(), users, "../x", []byte("long enough password")); err == nil {
		t.Fatal("AddUser accepted a bad name")
	}
}

// TestCrashSafety: an upload abandoned mid-way leaves no visible blob, bytes written after the last
// acknowledged chunk are discarded, and stray temporary files are never served or counted.
func TestCrashSafety(t *testing.T) {
	tr := newTestRegistry(t)
	blob := bytes.Repeat([]byte("x"), 1000)
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob[:400])), http.StatusAccepted, "")

	// The client dies part-way through a chunk it announced as 600 bytes.
	conn, err := net.Dial("tcp", tr.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\nContent-Range: 400-999\r\n\r\n", loc)
	conn.Write(blob[400:600])
	conn.Close()
	id := loc[strings.LastIndex(loc, "/")+1:]
	var rng string
	for range 100 { // the server notices the disconnect asynchronously
		resp = tr.do("GET", loc, nil)
		expect(t, resp, http.StatusNoContent, "")
		if rng = resp.Header.Get("Range"); rng == "0-399" {
			fi, err := os.Stat(filepath.Join(tr.dir, "uploads", id, "data"))
			if err == nil && fi.Size() == 400 {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rng != "0-399" {
		t.Fatalf("Range after an aborted chunk: %q", rng)
	}
	expect(t, tr.do("HEAD", "/v2/r/blobs/"+sha(blob), nil), http.StatusNotFound, "")

	// A crash after writing data but before saving state: the unacknowledged tail is cut off.
	f, err := os.OpenFile(filepath.Join(tr.dir, "uploads", id, "data"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("garbage"))
	f.Close()
	resp = tr.do("GET", loc, nil)
	expect(t, resp, http.StatusNoContent, "")
	if resp.Header.Get("Range") != "0-399" {
		t.Fatalf("Range after an unacknowledged write: %q", resp.Header.Get("Range"))
	}
	expect(t, tr.do("PUT", loc+"?digest="+sha(blob), bytes.NewReader(blob[400:]), "Content-Range", "400-999"), http.StatusCreated, "")

	// A leftover temporary file in blobs/ is not a blob.
	tmp := filepath.Join(tr.dir, "blobs", "sha256", ".tmp-123")
	if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, tr.do("GET", "/v2/r/blobs/sha256:.tmp-123", nil), http.StatusBadRequest, codeDigestInvalid)
	st, err := tr.reg.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.BlobsKept+st.BlobsRemoved != 1 {
		t.Fatalf("GC counted the temporary file: %+v", st)
	}
}

// TestManifestBlobsMustBeInRepository is issue 6 A20: a manifest may name only blobs linked in its own
// repository. A blob pushed to another repository (which the pusher may not be able to read there) is unknown
// until mounted or pushed here, for the config and for each layer, and the refused manifest stores nothing.
func TestManifestBlobsMustBeInRepository(t *testing.T) {
	tr := newTestRegistry(t)
	cfg, layer := []byte(`{"os":"linux"}`), []byte("a layer only in repository a")
	cd, ld := tr.pushBlob("a", cfg), tr.pushBlob("a", layer)
	own := tr.pushBlob("b", []byte("b's own layer"))
	ownCfg := tr.pushBlob("b", []byte(`{"os":"b"}`))
	for name, m := range map[string]map[string]any{
		"config elsewhere": image(cd, len(cfg), map[string]int{own: len("b's own layer")}, nil),
		"layer elsewhere":  image(ownCfg, len(`{"os":"b"}`), map[string]int{ld: len(layer)}, nil),
	} {
		before := storedFiles(t, filepath.Join(tr.dir, "repos", "b"))
		_, resp := tr.pushManifest("b", "v1", m)
		if body := expect(t, resp, http.StatusBadRequest, codeManifestBlobUnknown); !bytes.Contains(body, []byte(`in repository \"b\"`)) {
			t.Fatalf("%s: message does not name the repository: %s", name, body)
		}
		if after := storedFiles(t, filepath.Join(tr.dir, "repos", "b")); !slices.Equal(before, after) {
			t.Fatalf("%s: a refused manifest changed repository b: %v -> %v", name, before, after)
		}
	}
	expect(t, tr.do("GET", "/v2/b/manifests/v1", nil), http.StatusNotFound, codeManifestUnknown)
	// Mounted into b, the same manifest is accepted.
	for _, d := range []string{cd, ld} {
		expect(t, tr.do("POST", "/v2/b/blobs/uploads/?mount="+d+"&from=a", nil), http.StatusCreated, "")
	}
	_, resp := tr.pushManifest("b", "v1", image(cd, len(cfg), map[string]int{ld: len(layer)}, nil))
	expect(t, resp, http.StatusCreated, "")
}

// TestLargeUnalignedChunks pushes chunks of several MiB at offsets and lengths that are not block multiples,
// so that the copy's direct (O_DIRECT) and page-cache writes, and its multi-buffer pipeline, mix within one
// blob; the stored blob must be byte for byte what was sent.
func TestLargeUnalignedChunks(t *testing.T) {
	tr := newTestRegistry(t)
	blob := make([]byte, 9<<20+12345)
	(&patternReader{n: int64(len(blob))}).Read(blob)
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	cuts := []int{0, 3<<20 + 7, 3<<20 + 7 + 4<<20, len(blob)}
	for i := 0; i+1 < len(cuts); i++ {
		a, b := cuts[i], cuts[i+1]
		method, path := "PATCH", loc
		if i+2 == len(cuts) {
			method, path = "PUT", loc+"?digest="+sha(blob)
		}
		resp = tr.do(method, path, bytes.NewReader(blob[a:b]), "Content-Range", fmt.Sprintf("%d-%d", a, b-1))
		if method == "PATCH" {
			expect(t, resp, http.StatusAccepted, "")
			loc = resp.Header.Get("Location")
		} else {
			expect(t, resp, http.StatusCreated, "")
		}
	}
	if got := expect(t, tr.do("GET", "/v2/r/blobs/"+sha(blob), nil), http.StatusOK, ""); !bytes.Equal(got, blob) {
		t.Fatal("the stored blob differs from the chunks sent")
	}
}
