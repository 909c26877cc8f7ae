package tlog

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
)

// serveLog serves l (the REST API and its files) on a loopback test server, as ssf log serve does.
func serveLog(t *testing.T, l *Log) *httptest.Server {
	t.Helper()
	api, err := NewServer(context.Background(), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	static, err := NewStaticHandler(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { static.Close() })
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/", static)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// hashedRekordFiles writes an artifact, its signature (DER) by a fresh key, and the key's PEM, as rekor-cli
// upload takes them.
func hashedRekordFiles(t *testing.T, dir, content string) (artifact, sig, pub string, k *ecdsa.PrivateKey) {
	t.Helper()
	k = newKey(t)
	d := sha256.Sum256([]byte(content))
	s, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	artifact, sig, pub = filepath.Join(dir, "artifact"), filepath.Join(dir, "artifact.sig"), filepath.Join(dir, "key.pub")
	for p, b := range map[string][]byte{artifact: []byte(content), sig: s, pub: pubPEM(t, k.Public())} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return artifact, sig, pub, k
}

// TestRekorCLI runs stock rekor-cli v1.5.3 against the log's REST API: loginfo (checkpoint signature with the key
// it fetches; on the second run a consistency proof from the tree it stored), get by index, upload of a
// hashedrekord, get by UUID, a second upload answered as already there, and verify.
func TestRekorCLI(t *testing.T) {
	rekorCLI := interopTool(t, "SSF_REKOR_CLI", "rekor-cli-v1.5.3") // make tools installs it under its version
	l := openLog(t, t.TempDir(), newKey(t))
	appendN(t, l, 0, 3)
	awaitPublished(t, l, 3)
	srv := serveLog(t, l)
	work := t.TempDir()
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(rekorCLI, append([]string{"--rekor_server", srv.URL}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+work) // rekor-cli keeps the trees it saw in ~/.rekor
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out) + stderr.String(), err
		}
		return string(out), nil
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("rekor-cli %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	var info struct {
		ActiveTreeSize int64
		RootHash       string
		TreeID         string
	}
	if err := json.Unmarshal([]byte(mustRun("loginfo", "--format", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.ActiveTreeSize != 3 || info.TreeID != fmt.Sprint(TreeID(l.LogID())) {
		t.Fatalf("loginfo: %+v, want size 3 and tree %d", info, TreeID(l.LogID()))
	}

	var got struct {
		LogIndex int
		UUID     string
	}
	if err := json.Unmarshal([]byte(mustRun("get", "--log-index", "1", "--format", "json")), &got); err != nil {
		t.Fatal(err)
	}
	e1, err := l.Entry(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.LogIndex != 1 || !strings.HasSuffix(got.UUID, hex.EncodeToString(rfc6962.DefaultHasher.HashLeaf(e1.Body))) {
		t.Fatalf("get --log-index 1: %+v", got)
	}

	_, sig, pub, _ := hashedRekordFiles(t, work, "an artifact")
	up := mustRun("upload", "--type", "hashedrekord", "--pki-format", "x509", "--artifact-hash", sha256Of("an artifact"), "--signature", sig, "--public-key", pub)
	if !strings.Contains(up, "Created entry at index 3") {
		t.Fatalf("upload: %s", up)
	}
	uuid := up[strings.LastIndex(up, "/")+1:]
	uuid = strings.TrimSpace(uuid)
	if err := json.Unmarshal([]byte(mustRun("get", "--uuid", uuid, "--format", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.LogIndex != 3 || got.UUID != uuid {
		t.Fatalf("get --uuid %s: %+v", uuid, got)
	}
	// The plain UUID (no tree ID) finds it too.
	if err := json.Unmarshal([]byte(mustRun("get", "--uuid", uuid[16:], "--format", "json")), &got); err != nil || got.LogIndex != 3 {
		t.Fatalf("get --uuid %s: %+v %v", uuid[16:], got, err)
	}
	again := mustRun("upload", "--type", "hashedrekord", "--pki-format", "x509", "--artifact-hash", sha256Of("an artifact"), "--signature", sig, "--public-key", pub)
	if !strings.Contains(again, "Entry already exists") || !strings.Contains(again, uuid) {
		t.Fatalf("second upload: %s", again)
	}
	ver := mustRun("verify", "--type", "hashedrekord", "--pki-format", "x509", "--artifact-hash", sha256Of("an artifact"), "--signature", sig, "--public-key", pub, "--format", "json")
	if !strings.Contains(ver, `"Index":3`) {
		t.Fatalf("verify: %s", ver)
	}
	// The tree grew since the first loginfo: rekor-cli now checks a consistency proof from the size it stored.
	if err := json.Unmarshal([]byte(mustRun("loginfo", "--format", "json")), &info); err != nil || info.ActiveTreeSize != 4 {
		t.Fatalf("second loginfo: %+v %v", info, err)
	}
	if size := awaitPublished(t, l, 4); size.Size != 4 {
		t.Fatalf("the log has %d entries after one upload and one duplicate, want 4", size.Size)
	}

	// A DSSE envelope, as rekor-cli proposes it (the envelope and its verifiers), then found by verify.
	dk := newKey(t)
	envFile, dpub := filepath.Join(work, "envelope.json"), filepath.Join(work, "dsse.pub")
	if err := os.WriteFile(envFile, signDSSE(t, dk, "application/vnd.in-toto+json", []byte(`{"_type":"x"}`)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dpub, pubPEM(t, dk.Public()), 0o644); err != nil {
		t.Fatal(err)
	}
	if up := mustRun("upload", "--type", "dsse", "--artifact", envFile, "--public-key", dpub); !strings.Contains(up, "Created entry at index 4") {
		t.Fatalf("dsse upload: %s", up)
	}
	if ver := mustRun("verify", "--type", "dsse", "--artifact", envFile, "--public-key", dpub, "--format", "json"); !strings.Contains(ver, `"Index":4`) {
		t.Fatalf("dsse verify: %s", ver)
	}
	if cp := awaitPublished(t, l, 5); cp.Size != 5 {
		t.Fatalf("the log has %d entries, want 5", cp.Size)
	}

	// A bad signature is refused (rekor-cli checks it before sending; TestRESTRefuses shows the server does too)
	// and nothing is appended.
	_, _, otherPub, _ := hashedRekordFiles(t, t.TempDir(), "another artifact")
	if out, err := run("upload", "--type", "hashedrekord", "--pki-format", "x509", "--artifact-hash", sha256Of("an artifact"), "--signature", sig, "--public-key", otherPub); err == nil {
		t.Fatalf("upload with the wrong key succeeded: %s", out)
	}
	if cp := awaitPublished(t, l, 5); cp.Size != 5 {
		t.Fatalf("a refused upload changed the log: %d entries", cp.Size)
	}
}

type apiAnswer struct {
	status   int
	location string
	body     map[string]any
	raw      string
}

func call(t *testing.T, method, url, contentType, body string) apiAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := apiAnswer{status: resp.StatusCode, location: resp.Header.Get("Location"), raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	return a
}

func hashedRekordProposal(t *testing.T, k *ecdsa.PrivateKey, content string, sig []byte) string {
	t.Helper()
	d := sha256.Sum256([]byte(content))
	if sig == nil {
		var err error
		if sig, err = ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(map[string]any{"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": map[string]any{
		"data":      map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(d[:])}},
		"signature": map[string]any{"content": sig, "publicKey": map[string]any{"content": pubPEM(t, k.Public())}},
	}})
	return string(b)
}

// TestRESTRefuses: every malformed, unsupported, badly signed or oversized proposal is a 4xx JSON error naming
// what is wrong, and the log is unchanged; a duplicate is a 409 pointing at the entry; a DSSE proposal appends.
func TestRESTRefuses(t *testing.T) {
	l := openLog(t, t.TempDir(), newKey(t))
	srv := serveLog(t, l)
	entries := srv.URL + "/api/v1/log/entries"
	k := newKey(t)
	env := signDSSE(t, k, "application/vnd.in-toto+json", []byte(`{"a":1}`))
	dsse, _ := json.Marshal(map[string]any{"kind": "dsse", "apiVersion": "0.0.1", "spec": map[string]any{
		"proposedContent": map[string]any{"envelope": string(env), "verifiers": [][]byte{pubPEM(t, k.Public())}}}})
	if a := call(t, "POST", entries, "application/json", string(dsse)); a.status != http.StatusCreated || !strings.HasPrefix(a.location, "/api/v1/log/entries/") {
		t.Fatalf("dsse proposal: %d %s", a.status, a.raw)
	}
	good := hashedRekordProposal(t, k, "x", nil)
	first := call(t, "POST", entries, "application/json", good)
	if first.status != http.StatusCreated {
		t.Fatalf("hashedrekord proposal: %d %s", first.status, first.raw)
	}
	dup := call(t, "POST", entries, "application/json", good)
	if dup.status != http.StatusConflict || dup.location != first.location || dup.body["code"] != float64(409) {
		t.Fatalf("duplicate: %d %q %s (first at %q)", dup.status, dup.location, dup.raw, first.location)
	}

	otherSig, _ := ecdsa.SignASN1(rand.Reader, newKey(t), make([]byte, 32))
	for _, c := range []struct {
		name, contentType, body string
		status                  int
		message                 string
	}{
		{"not JSON", "application/json", "{", 400, "parsing the request body"},
		{"unknown field", "application/json", `{"kind":"hashedrekord","apiVersion":"0.0.1","spec":{},"extra":1}`, 400, "unknown field"},
		{"unsupported kind", "application/json", `{"kind":"rekord","apiVersion":"0.0.1","spec":{}}`, 400, `kind "rekord" is not supported`},
		{"unsupported version", "application/json", `{"kind":"hashedrekord","apiVersion":"0.0.2","spec":{}}`, 400, `apiVersion "0.0.2"`},
		{"bad signature", "application/json", hashedRekordProposal(t, k, "y", otherSig), 400, "signature does not verify"},
		{"dsse without content", "application/json", `{"kind":"dsse","apiVersion":"0.0.1","spec":{}}`, 400, "no proposedContent"},
		{"oversized", "application/json", `{"kind":"dsse","apiVersion":"0.0.1","spec":{"proposedContent":{"envelope":"` + strings.Repeat("a", MaxRequestBody) + `"}}}`, 413, "larger than the limit"},
		{"not JSON content type", "text/plain", good, 415, "application/json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := call(t, "POST", entries, c.contentType, c.body)
			msg, _ := a.body["message"].(string)
			if a.status != c.status || a.body["code"] != float64(c.status) || !strings.Contains(msg, c.message) {
				t.Fatalf("got %d %s, want %d with %q", a.status, a.raw, c.status, c.message)
			}
		})
	}
	if cp := awaitPublished(t, l, 2); cp.Size != 2 {
		t.Fatalf("after refused proposals the log has %d entries, want 2", cp.Size)
	}

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/log/entries?logIndex=2", 404},
		{"GET", "/api/v1/log/entries?logIndex=-1", 400},
		{"GET", "/api/v1/log/entries/" + strings.Repeat("0", 64), 404},
		{"GET", "/api/v1/log/entries/" + strings.Repeat("0", 63), 400},
		{"GET", "/api/v1/log/entries/" + strings.Repeat("f", 16) + strings.Repeat("0", 64), 404},
		{"DELETE", "/api/v1/log/entries/" + strings.Repeat("0", 64), 405},
		{"GET", "/api/v1/log/proof?firstSize=2&lastSize=1", 400},
		{"GET", "/api/v1/log/proof?firstSize=1&lastSize=3", 404},
		{"GET", "/api/v1/log/proof?lastSize=2", 200},
		{"GET", "/api/v1/log/publicKey?treeID=1", 404},
		{"GET", "/api/v1/nothing", 404},
		{"POST", "/api/v1/log/entries/retrieve", 400},
		{"GET", "/api/v1/log/entries/retrieve", 405},
	} {
		if a := call(t, c.method, srv.URL+c.path, "", ""); a.status != c.status || a.body["code"] != float64(c.status) && c.status != 200 {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, a.status, a.raw, c.status)
		}
	}
	tooMany := `{"logIndexes":[0,0,0,0,0,0,0,0,0,0,0]}`
	if a := call(t, "POST", srv.URL+"/api/v1/log/entries/retrieve", "application/json", tooMany); a.status != 422 || !strings.Contains(a.raw, "give 1 to 10") {
		t.Errorf("a search of 11: %d %s", a.status, a.raw)
	}
	// retrieve by UUID, index and proposed entry, with what is not there left out.
	uuid := strings.TrimPrefix(first.location, "/api/v1/log/entries/")
	q := fmt.Sprintf(`{"entryUUIDs":[%q,%q],"logIndexes":[0,7],"entries":[%s]}`, uuid, strings.Repeat("0", 64), good)
	a := call(t, "POST", srv.URL+"/api/v1/log/entries/retrieve", "application/json", q)
	var found []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(a.raw), &found); err != nil || a.status != 200 || len(found) != 3 || found[0][uuid] == nil || found[2][uuid] == nil {
		t.Fatalf("retrieve: %d %s", a.status, a.raw)
	}
	var e rekorEntry
	if err := json.Unmarshal(found[0][uuid], &e); err != nil || e.LogIndex != 1 {
		t.Fatalf("retrieve: %s", found[0][uuid])
	}
	body, _ := base64.StdEncoding.DecodeString(e.Body)
	v, _ := NewVerifier(l.PublicKey(), "")
	if err := v.VerifyEntry(&LogEntry{Kind: KindHashedRekord, Body: body, LogIndex: 1, IntegratedTime: e.IntegratedTime, LogID: l.LogID(),
		SET: e.Verification.SignedEntryTimestamp, Proof: InclusionProof{TreeSize: 2, RootHash: mustHex(t, e.Verification.InclusionProof.RootHash),
			Hashes: mustHexAll(t, e.Verification.InclusionProof.Hashes), Checkpoint: Checkpoint{Raw: []byte(e.Verification.InclusionProof.Checkpoint)}}}); err != nil {
		t.Fatalf("the retrieved entry does not verify: %v", err)
	}
}

// awaitPublished returns the published checkpoint once it covers size entries (tessera publishes within
// checkpointInterval of an append); Open does the same after a crash.
func awaitPublished(t *testing.T, l *Log, size uint64) *Checkpoint {
	t.Helper()
	if err := l.awaitPublished(context.Background(), size); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func sha256Of(s string) string {
	d := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(d[:])
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHexAll(t *testing.T, ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = mustHex(t, s)
	}
	return out
}

// TestStaticFiles: the log's published files are served as a static server would, and nothing else: not .ssf/,
// not a directory, not a symbolic link, not a path outside the layout.
func TestStaticFiles(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, newKey(t))
	appendN(t, l, 0, 2)
	srv := serveLog(t, l)
	cp := awaitPublished(t, l, 2)
	if a := call(t, "GET", srv.URL+"/checkpoint", "", ""); a.status != 200 || a.raw != string(cp.Raw) {
		t.Fatalf("/checkpoint: %d %q, want %q", a.status, a.raw, cp.Raw)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, "tile/entries/000.p/2"))
	if err != nil {
		t.Fatal(err)
	}
	if a := call(t, "GET", srv.URL+"/tile/entries/000.p/2", "", ""); a.status != 200 || a.raw != string(bundle) {
		t.Fatalf("/tile/entries/000.p/2: %d", a.status)
	}
	// A link that stays inside the directory (os.Root alone would follow it) and one that leaves it.
	if err := os.Symlink("../../checkpoint", filepath.Join(dir, "tile/entries/001")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(dir, "tile/5")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/.ssf/lock", "/.ssf/integrated-time", "/tile/", "/tile/entries", "/", "/tile/entries/001",
		"/tile/5/000", "/tile/entries/000.p/2/", "/%2e%2e/etc/passwd"} {
		if a := call(t, "GET", srv.URL+p, "", ""); a.status == 200 {
			t.Errorf("GET %s served: %q", p, a.raw)
		}
	}
	if a := call(t, "PUT", srv.URL+"/checkpoint", "", "x"); a.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT /checkpoint: %d", a.status)
	}
}

// TestFindLeaf: the leaf index finds every entry by its UUID, the ones just appended (not yet published) too,
// survives a restart, and rebuilds what a crash cut off.
func TestFindLeaf(t *testing.T) {
	ctx := context.Background()
	dir, logKey := t.TempDir(), newKey(t)
	l := openLog(t, dir, logKey)
	if _, err := l.FindLeaf(ctx, make([]byte, 32)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty log: %v", err)
	}
	k := newKey(t)
	var leaves [][]byte
	for i := range 300 {
		e, err := l.Append(ctx, testEntry(t, k, i))
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, rfc6962.DefaultHasher.HashLeaf(e.Body))
		if i == 0 {
			// Found at once, before tessera publishes a checkpoint covering it.
			if got, err := l.FindLeaf(ctx, leaves[0]); err != nil || got != 0 {
				t.Fatalf("entry 0 right after Append: %d %v", got, err)
			}
		}
	}
	findAll := func(when string) {
		t.Helper()
		for i, leaf := range leaves {
			if got, err := l.FindLeaf(ctx, leaf); err != nil || got != uint64(i) {
				t.Fatalf("entry %d %s: %d %v", i, when, got, err)
			}
		}
	}
	findAll("before a restart")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, logKey)
	findAll("after a restart")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A crash cut the index mid-entry: the last bundle's worth is redone from the tiles.
	if err := os.Truncate(filepath.Join(dir, ".ssf", "leaf-index"), 8*290+3); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, logKey)
	findAll("after a crash cut the index")
	missing := rfc6962.DefaultHasher.HashLeaf([]byte("not in the log"))
	if _, err := l.FindLeaf(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a leaf not in the log: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".ssf", "leaf-index")); err != nil || fi.Size() != 8*300 {
		t.Fatalf("leaf index: %v %v, want 8 bytes per entry", fi, err)
	}
}

// FuzzProposedEntry: whatever a client posts, proposed answers an entry that parses back, or ErrBadEntry; it never
// panics.
func FuzzProposedEntry(f *testing.F) {
	k := newKey(f)
	d := sha256.Sum256([]byte("x"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	hr, _ := json.Marshal(map[string]any{"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": map[string]any{
		"data":      map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(d[:])}},
		"signature": map[string]any{"content": sig, "publicKey": map[string]any{"content": pubPEM(f, k.Public())}}}})
	env := signDSSE(f, k, "application/vnd.in-toto+json", []byte(`{"a":1}`))
	ds, _ := json.Marshal(map[string]any{"kind": "dsse", "apiVersion": "0.0.1", "spec": map[string]any{
		"proposedContent": map[string]any{"envelope": string(env), "verifiers": [][]byte{pubPEM(f, k.Public())}}}})
	f.Add(hr)
	f.Add(ds)
	f.Add([]byte(`{"kind":"dsse","apiVersion":"0.0.1","spec":{"proposedContent":{"envelope":"{}","verifiers":[]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p proposedEntry
		if strictUnmarshal(b, &p) != nil {
			return
		}
		e, err := proposed(p)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error not wrapping ErrBadEntry: %v", err)
			}
			return
		}
		if _, err := ParseEntry(e.body); err != nil {
			t.Fatalf("an accepted proposal does not parse back: %v", err)
		}
	})
}

// TestReadOnlyServe: a read-only Log beside the appending one (which holds the lock) serves every published
// entry, follows the log as it grows, finds entries by UUID, and refuses appends with 403.
func TestReadOnlyServe(t *testing.T) {
	ctx := context.Background()
	dir, logKey := t.TempDir(), newKey(t)
	if _, err := OpenReadOnly(ctx, dir, logKey); err == nil {
		t.Fatal("OpenReadOnly of an empty directory succeeded")
	}
	w := openLog(t, dir, logKey)
	appendN(t, w, 0, 3)
	awaitPublished(t, w, 3)
	r, err := OpenReadOnly(ctx, dir, logKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(ctx) })
	srv := serveLog(t, r)
	if a := call(t, "GET", srv.URL+"/api/v1/log/entries?logIndex=2", "", ""); a.status != 200 {
		t.Fatalf("entry 2: %d %s", a.status, a.raw)
	}
	e, err := w.Append(ctx, testEntry(t, newKey(t), 100))
	if err != nil {
		t.Fatal(err)
	}
	awaitPublished(t, w, 4)
	uuid := fmt.Sprintf("%x", rfc6962.DefaultHasher.HashLeaf(e.Body))
	a := call(t, "GET", srv.URL+"/api/v1/log/entries/"+uuid, "", "")
	var got map[string]rekorEntry
	if err := json.Unmarshal([]byte(a.raw), &got); err != nil || a.status != 200 {
		t.Fatalf("the entry appended after the read-only open, by UUID: %d %s", a.status, a.raw)
	}
	for _, re := range got {
		if re.LogIndex != 3 || re.Verification.InclusionProof.TreeSize != 4 {
			t.Fatalf("entry by UUID: %+v", re)
		}
	}
	if a := call(t, "POST", srv.URL+"/api/v1/log/entries", "application/json", hashedRekordProposal(t, newKey(t), "z", nil)); a.status != http.StatusForbidden || !strings.Contains(a.raw, "read-only") {
		t.Fatalf("POST to a read-only server: %d %s", a.status, a.raw)
	}
	if _, err := r.Append(ctx, testEntry(t, newKey(t), 7)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Append on a read-only log: %v", err)
	}
	if cp := awaitPublished(t, w, 4); cp.Size != 4 {
		t.Fatalf("the log has %d entries, want 4", cp.Size)
	}
}
