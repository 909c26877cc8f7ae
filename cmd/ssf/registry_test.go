package main

// End-to-end tests of ssf registry serve: the built binary serving a real factory home, with a user added by
// ssf registry user add, driven by stock crane, oras and cosign that find their credentials the standard way (a
// Docker config.json under $DOCKER_CONFIG), and by ssf publish, verify and build --publish.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	bundleArtifactType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	ociManifestType    = "application/vnd.oci.image.manifest.v1+json"
	ociIndexType       = "application/vnd.oci.image.index.v1+json"
)

// embeddedRegistry is a running ssf registry serve with one user.
type embeddedRegistry struct {
	host       string // 127.0.0.1:PORT
	user, pass string
	home       string        // the registry's own SSF_HOME
	creds      string        // a DOCKER_CONFIG directory logged in as user
	anon       string        // a DOCKER_CONFIG directory with no credentials
	dir        string        // scratch space (HOME of the tools)
	log        *lockedBuffer // the server's stderr: one line per request
}

// lockedBuffer is a bytes.Buffer the server's stderr copier writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCmd runs cmd and returns its output and exit code; only a failure to start it fails the test.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", cmd.Path, err)
	}
	return r
}

// ssfEnv runs ssf with the shared factory home and a per-test TMPDIR (so tests can check it is left empty), plus
// extra environment, which may override both.
func ssfEnv(t *testing.T, tmp string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ssfBin, args...)
	cmd.Env = append(append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+tmp), env...)
	return runCmd(t, cmd)
}

// startRegistry initialises a fresh factory home, adds a user, serves its registry on a free loopback port until
// the test ends (then stops it with SIGINT and checks it exits 0), and writes the Docker configs for it.
func startRegistry(t *testing.T) *embeddedRegistry {
	t.Helper()
	dir := t.TempDir()
	r := &embeddedRegistry{user: "alice", pass: "correct-horse-battery", home: filepath.Join(dir, "home"),
		creds: filepath.Join(dir, "docker-creds"), anon: filepath.Join(dir, "docker-anon"), dir: dir, log: &lockedBuffer{}}
	env := append(os.Environ(), "SSF_HOME="+r.home, "TMPDIR="+dir)

	cmd := exec.Command(ssfBin, "init")
	cmd.Env = env
	if res := runCmd(t, cmd); res.code != 0 {
		t.Fatalf("ssf init: exit %d\n%s", res.code, res.stderr)
	}
	cmd = exec.Command(ssfBin, "registry", "user", "add", r.user)
	cmd.Env, cmd.Stdin = env, strings.NewReader(r.pass+"\n")
	if res := runCmd(t, cmd); res.code != 0 || !strings.Contains(res.stdout, "user alice saved") {
		t.Fatalf("ssf registry user add: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.host = ln.Addr().String()
	ln.Close()
	serve := exec.Command(ssfBin, "registry", "serve", "--addr", r.host)
	serve.Env, serve.Stdout, serve.Stderr = env, r.log, r.log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	t.Cleanup(func() {
		if err := serve.Process.Signal(syscall.SIGINT); err != nil {
			t.Errorf("interrupting ssf registry serve: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ssf registry serve after SIGINT: %v, want exit 0\n%s", err, r.log.String())
			}
		case <-time.After(20 * time.Second):
			serve.Process.Kill()
			<-done
			t.Errorf("ssf registry serve did not stop within 20s of SIGINT")
		}
		if !strings.Contains(r.log.String(), "registry shutting down") {
			t.Errorf("ssf registry serve did not log its shutdown:\n%s", r.log.String())
		}
		if t.Failed() {
			t.Logf("ssf registry serve log:\n%s", r.log.String())
		}
	})

	// Wait until the server answers /v2/ (a bounded start-up wait, not synchronisation with the code under test).
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err := http.Get("http://" + r.host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /v2/ on loopback with anonymous pull: %s, want 200", resp.Status)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("ssf registry serve exited before serving: %v\n%s", err, r.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssf registry serve did not answer on %s: %v\n%s", r.host, err, r.log.String())
		}
	}

	auth := base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.pass))
	writeDockerConfig(t, r.creds, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.host, auth))
	writeDockerConfig(t, r.anon, `{"auths":{}}`)
	return r
}

func writeDockerConfig(t *testing.T, dir, config string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}

// env is the environment for a client: a scratch HOME and the Docker config with or without the user's
// credentials.
func (r *embeddedRegistry) env(withCreds bool) []string {
	cfg := r.anon
	if withCreds {
		cfg = r.creds
	}
	return []string{"HOME=" + r.dir, "DOCKER_CONFIG=" + cfg}
}

// tool runs an external client (crane, oras, cosign) in dir with the registry's client environment.
func (r *embeddedRegistry) tool(t *testing.T, withCreds bool, dir, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), r.env(withCreds)...)
	return runCmd(t, cmd)
}

// must runs a tool with credentials and fails the test unless it exits 0.
func (r *embeddedRegistry) must(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	res := r.tool(t, true, dir, bin, args...)
	if res.code != 0 {
		t.Fatalf("%s %s: exit %d\n%s%s", filepath.Base(bin), strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// get sends GET http://host/v2/path, with basic auth unless anonymous.
func (r *embeddedRegistry) get(t *testing.T, path string, withCreds bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.host+"/v2/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if withCreds {
		req.SetBasicAuth(r.user, r.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// isProvenanceReferrer says whether a referrer carries a provenance bundle (publish attaches SBOMs too).
func isProvenanceReferrer(d ociDescriptor) bool {
	return d.Annotations["dev.sigstore.bundle.predicateType"] == "https://slsa.dev/provenance/v1"
}

func provenanceReferrers(refs []ociDescriptor) []ociDescriptor {
	var out []ociDescriptor
	for _, d := range refs {
		if isProvenanceReferrer(d) {
			out = append(out, d)
		}
	}
	return out
}

type ociDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType"`
	Annotations  map[string]string `json:"annotations"`
}

type ociManifest struct {
	MediaType    string          `json:"mediaType"`
	ArtifactType string          `json:"artifactType"`
	Config       ociDescriptor   `json:"config"`
	Layers       []ociDescriptor `json:"layers"`
	Subject      *ociDescriptor  `json:"subject"`
	Manifests    []ociDescriptor `json:"manifests"` // for an index
}

// referrers asks the referrers API of repo for the referrers of digest and checks the answer is an OCI index.
func (r *embeddedRegistry) referrers(t *testing.T, repo, digest string, withCreds bool) []ociDescriptor {
	t.Helper()
	resp, body := r.get(t, repo+"/referrers/"+digest, withCreds)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/%s/referrers/%s: %s\n%s", repo, digest, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ociIndexType {
		t.Errorf("referrers Content-Type = %q, want %q", ct, ociIndexType)
	}
	var idx ociManifest
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatalf("referrers answer is not JSON: %v\n%s", err, body)
	}
	if idx.MediaType != ociIndexType {
		t.Errorf("referrers index mediaType = %q, want %q", idx.MediaType, ociIndexType)
	}
	return idx.Manifests
}

// tags lists repo's tags with crane ls (with credentials).
func (r *embeddedRegistry) tags(t *testing.T, crane, repo string) []string {
	t.Helper()
	return strings.Fields(r.must(t, r.dir, crane, "ls", r.host+"/"+repo))
}

// assertNoRepo checks that repo was never created: its tag list is NAME_UNKNOWN.
func (r *embeddedRegistry) assertNoRepo(t *testing.T, crane, repo string) {
	t.Helper()
	res := r.tool(t, true, r.dir, crane, "ls", r.host+"/"+repo)
	if res.code == 0 || !strings.Contains(res.stderr, "NAME_UNKNOWN") {
		t.Errorf("crane ls %s: exit %d, want NAME_UNKNOWN (nothing stored)\n%s%s", repo, res.code, res.stdout, res.stderr)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// layerTar is an uncompressed tar of one file.
func layerTar(t *testing.T, name string, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg,
		ModTime: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// assertFiles checks that dir holds each file with exactly the given bytes.
func assertFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes (%v), want the %d bytes pushed", name, len(got), err, len(want))
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// orasDigest reads the digest from oras's --format json output.
func orasDigest(t *testing.T, out string) string {
	t.Helper()
	var o struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil || !strings.HasPrefix(o.Digest, "sha256:") {
		t.Fatalf("no digest in oras output (%v):\n%s", err, out)
	}
	return o.Digest
}

// crane pushes, copies and pulls an image; oras pushes and pulls files and attaches a referrer; every digest and
// byte that comes back is the one that went up.
func TestRegistryCraneAndOras(t *testing.T) {
	crane := interopTool(t, "SSF_CRANE", "crane")
	oras := interopTool(t, "SSF_ORAS", "oras")
	reg := startRegistry(t)
	work := t.TempDir()

	t.Run("crane image", func(t *testing.T) {
		tarball := layerTar(t, "etc/greeting", []byte("hello from the embedded registry\n"))
		writeFiles(t, work, map[string][]byte{"layer.tar": tarball})
		out := reg.must(t, work, crane, "append", "--oci-empty-base", "-f", "layer.tar", "-t", reg.host+"/team/img:v1")
		ref := lastLine(out)
		digest, ok := strings.CutPrefix(ref, reg.host+"/team/img@")
		if !ok || !strings.HasPrefix(digest, "sha256:") {
			t.Fatalf("crane append printed %q, want %s/team/img@sha256:...", ref, reg.host)
		}
		if got := strings.TrimSpace(reg.must(t, work, crane, "digest", reg.host+"/team/img:v1")); got != digest {
			t.Errorf("crane digest of the tag = %s, want the pushed %s", got, digest)
		}
		raw := reg.must(t, work, crane, "manifest", reg.host+"/team/img:v1")
		if got := "sha256:" + sha256Hex([]byte(raw)); got != digest {
			t.Errorf("the manifest served for the tag hashes to %s, want %s", got, digest)
		}
		var m ociManifest
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		if m.MediaType != ociManifestType || len(m.Layers) != 1 {
			t.Fatalf("manifest: mediaType %q with %d layers, want one layer of an OCI manifest:\n%s", m.MediaType, len(m.Layers), raw)
		}
		layer := m.Layers[0]

		var cfg struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		cfgRaw := reg.must(t, work, crane, "config", reg.host+"/team/img:v1")
		if err := json.Unmarshal([]byte(cfgRaw), &cfg); err != nil {
			t.Fatal(err)
		}
		if want := []string{"sha256:" + sha256Hex(tarball)}; !slices.Equal(cfg.RootFS.DiffIDs, want) {
			t.Errorf("config diff_ids = %v, want %v", cfg.RootFS.DiffIDs, want)
		}
		if got := "sha256:" + sha256Hex([]byte(cfgRaw)); got != m.Config.Digest {
			t.Errorf("config blob hashes to %s, manifest names %s", got, m.Config.Digest)
		}

		blob := reg.must(t, work, crane, "blob", reg.host+"/team/img@"+layer.Digest)
		if got := "sha256:" + sha256Hex([]byte(blob)); got != layer.Digest || int64(len(blob)) != layer.Size {
			t.Errorf("layer blob: %s (%d bytes), want %s (%d bytes)", got, len(blob), layer.Digest, layer.Size)
		}
		zr, err := gzip.NewReader(strings.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, tarball) {
			t.Errorf("the layer does not decompress to the tar pushed (%v)", err)
		}

		// crane pull writes an OCI layout holding the same manifest and layer.
		layout := filepath.Join(work, "pulled")
		reg.must(t, work, crane, "pull", "--format", "oci", reg.host+"/team/img:v1", layout)
		var index ociManifest
		if data, err := os.ReadFile(filepath.Join(layout, "index.json")); err != nil || json.Unmarshal(data, &index) != nil {
			t.Fatalf("crane pull wrote no readable index.json: %v", err)
		}
		if len(index.Manifests) != 1 || index.Manifests[0].Digest != digest {
			t.Errorf("pulled layout's index = %+v, want the one manifest %s", index.Manifests, digest)
		}
		hexDigest := strings.TrimPrefix(layer.Digest, "sha256:")
		if got, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", hexDigest)); err != nil || string(got) != blob {
			t.Errorf("pulled layer differs from the served blob (%v)", err)
		}

		// A copy to another repository (crane mounts the blobs) keeps the digest.
		reg.must(t, work, crane, "copy", reg.host+"/team/img:v1", reg.host+"/other/img:copied")
		if got := strings.TrimSpace(reg.must(t, work, crane, "digest", reg.host+"/other/img:copied")); got != digest {
			t.Errorf("the copy has digest %s, want %s", got, digest)
		}
		if got := reg.tags(t, crane, "team/img"); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("crane ls team/img = %v, want [v1]", got)
		}
		if got := reg.tags(t, crane, "other/img"); !slices.Equal(got, []string{"copied"}) {
			t.Errorf("crane ls other/img = %v, want [copied]", got)
		}
	})

	t.Run("oras files and referrers", func(t *testing.T) {
		src := t.TempDir()
		files := map[string][]byte{"notes.txt": []byte("plain text\n"), "blob.bin": randomBytes(t, 256<<10)}
		writeFiles(t, src, files)
		target := reg.host + "/team/files"
		digest := orasDigest(t, reg.must(t, src, oras, "push", "--plain-http", "--format", "json", target+":art", "notes.txt", "blob.bin"))
		if got := strings.TrimSpace(reg.must(t, src, crane, "digest", target+":art")); got != digest {
			t.Errorf("the tag resolves to %s, oras pushed %s", got, digest)
		}

		for _, ref := range []string{target + ":art", target + "@" + digest} {
			dest := t.TempDir()
			reg.must(t, dest, oras, "pull", "--plain-http", "-o", dest, ref)
			assertFiles(t, dest, files)
		}

		note := map[string][]byte{"review.json": []byte(`{"approved":true}`)}
		writeFiles(t, src, note)
		const noteType = "application/vnd.ssf.test.review+json"
		attached := orasDigest(t, reg.must(t, src, oras, "attach", "--plain-http", "--format", "json",
			"--distribution-spec", "v1.1-referrers-api", "--artifact-type", noteType, target+"@"+digest, "review.json"))

		var disc struct {
			Referrers []ociDescriptor `json:"referrers"`
		}
		out := reg.must(t, src, oras, "discover", "--plain-http", "--format", "json", target+"@"+digest)
		if err := json.Unmarshal([]byte(out), &disc); err != nil {
			t.Fatalf("oras discover: %v\n%s", err, out)
		}
		if len(disc.Referrers) != 1 || disc.Referrers[0].Digest != attached || disc.Referrers[0].ArtifactType != noteType {
			t.Errorf("oras discover found %+v, want the one referrer %s of type %s", disc.Referrers, attached, noteType)
		}
		refs := reg.referrers(t, "team/files", digest, true)
		if len(refs) != 1 || refs[0].Digest != attached || refs[0].ArtifactType != noteType || refs[0].MediaType != ociManifestType {
			t.Errorf("referrers API answered %+v, want the one referrer %s of type %s", refs, attached, noteType)
		}
		if refs := reg.referrers(t, "team/files", digest+"?artifactType="+url.QueryEscape(noteType), true); len(refs) != 1 {
			t.Errorf("referrers filtered by their own artifactType = %+v, want the one referrer", refs)
		}
		if refs := reg.referrers(t, "team/files", digest+"?artifactType="+url.QueryEscape(bundleArtifactType), true); len(refs) != 0 {
			t.Errorf("referrers filtered by another artifactType = %+v, want none", refs)
		}
		if refs := reg.referrers(t, "team/files", "sha256:"+strings.Repeat("0", 64), true); len(refs) != 0 {
			t.Errorf("referrers of an unknown digest = %+v, want an empty index", refs)
		}

		dest := t.TempDir()
		reg.must(t, dest, oras, "pull", "--plain-http", "-o", dest, target+"@"+attached)
		assertFiles(t, dest, note)
		// The registry has the referrers API, so oras must not have made the sha256-<hex> fallback tag.
		if got := reg.tags(t, crane, "team/files"); !slices.Equal(got, []string{"art"}) {
			t.Errorf("crane ls team/files = %v, want only [art]", got)
		}
	})
}

// Without credentials nothing can be pushed; a wrong password is no better; pulls without credentials work on
// loopback (the default there).
func TestRegistryRejectsAnonymousPush(t *testing.T) {
	crane := interopTool(t, "SSF_CRANE", "crane")
	oras := interopTool(t, "SSF_ORAS", "oras")
	reg := startRegistry(t)
	work := t.TempDir()
	tarball := layerTar(t, "file", []byte("should never be stored\n"))
	files := map[string][]byte{"layer.tar": tarball, "a.txt": []byte("anonymous\n")}
	writeFiles(t, work, files)

	res := reg.tool(t, false, work, crane, "append", "--oci-empty-base", "-f", "layer.tar", "-t", reg.host+"/anon/crane:v1")
	if res.code == 0 || !strings.Contains(res.stderr, "UNAUTHORIZED") {
		t.Errorf("anonymous crane push: exit %d, want a failure with UNAUTHORIZED\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = reg.tool(t, false, work, oras, "push", "--plain-http", reg.host+"/anon/oras:v1", "a.txt")
	if res.code == 0 {
		t.Errorf("anonymous oras push succeeded:\n%s%s", res.stdout, res.stderr)
	}
	// oras reports a missing credential in its own words; the server's log says what it answered.
	var denied bool
	for _, line := range strings.Split(reg.log.String(), "\n") {
		if !strings.Contains(line, "path=/v2/anon/oras/") {
			continue
		}
		if strings.Contains(line, "status=401") {
			denied = true
		}
		if strings.Contains(line, "status=201") || strings.Contains(line, "status=202") {
			t.Errorf("the registry accepted part of an anonymous push: %s", line)
		}
	}
	if !denied {
		t.Errorf("the registry never answered 401 to the anonymous oras push:\n%s", reg.log.String())
	}

	bad := filepath.Join(t.TempDir(), "docker-bad")
	writeDockerConfig(t, bad, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.host,
		base64.StdEncoding.EncodeToString([]byte(reg.user+":not-the-password"))))
	cmd := exec.Command(crane, "append", "--oci-empty-base", "-f", "layer.tar", "-t", reg.host+"/anon/badpass:v1")
	cmd.Dir, cmd.Env = work, append(os.Environ(), "HOME="+reg.dir, "DOCKER_CONFIG="+bad)
	// crane's first request is a HEAD, whose 401 has no body to carry the UNAUTHORIZED code.
	if res := runCmd(t, cmd); res.code == 0 || !strings.Contains(res.stderr, "401 Unauthorized") {
		t.Errorf("crane push with a wrong password: exit %d, want a failure with 401 Unauthorized\n%s%s", res.code, res.stdout, res.stderr)
	}

	// Nothing was stored: no repository answers (the registry has no catalog endpoint), and the store (laid out
	// as internal/registry/doc.go says) holds no blob, link or upload.
	for _, repo := range []string{"anon/crane", "anon/oras", "anon/badpass"} {
		reg.assertNoRepo(t, crane, repo)
	}
	for _, sub := range []string{"blobs", "repos", "uploads"} {
		filepath.WalkDir(filepath.Join(reg.home, "registry", sub), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				t.Errorf("a refused push left %s in the store", path)
			}
			return nil
		})
	}

	// The same pushes with credentials succeed, and anonymous clients can pull the result.
	digest := orasDigest(t, reg.must(t, work, oras, "push", "--plain-http", "--format", "json", reg.host+"/anon/oras:v1", "a.txt"))
	dest := t.TempDir()
	if res := reg.tool(t, false, dest, oras, "pull", "--plain-http", "-o", dest, reg.host+"/anon/oras:v1"); res.code != 0 {
		t.Fatalf("anonymous oras pull: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	assertFiles(t, dest, map[string][]byte{"a.txt": files["a.txt"]})
	res = reg.tool(t, false, work, crane, "manifest", reg.host+"/anon/oras:v1")
	if res.code != 0 || "sha256:"+sha256Hex([]byte(res.stdout)) != digest {
		t.Errorf("anonymous crane manifest: exit %d, manifest hashes to sha256:%s, want %s\n%s", res.code, sha256Hex([]byte(res.stdout)), digest, res.stderr)
	}
	// Pulling with a wrong password is refused even though anonymous pulls are allowed: bad credentials are not
	// silently treated as none.
	resp, body := reg.get(t, "anon/oras/manifests/v1", false)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("anonymous GET manifest: %s\n%s", resp.Status, body)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.host+"/v2/anon/oras/manifests/v1", nil)
	req.SetBasicAuth(reg.user, "not-the-password")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET manifest with a wrong password: %s, want 401", resp.Status)
		}
	}

	// ssf registry user add refuses a short password with a usage error and keeps the file as it was.
	before, err := os.ReadFile(filepath.Join(reg.home, "registry", "users"))
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(ssfBin, "registry", "user", "add", "bob")
	cmd.Env, cmd.Stdin = append(os.Environ(), "SSF_HOME="+reg.home), strings.NewReader("short\n")
	if res := runCmd(t, cmd); res.code != 2 || !strings.Contains(res.stderr, "too short") {
		t.Errorf("user add with a short password: exit %d, want 2 naming it too short\n%s", res.code, res.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(reg.home, "registry", "users")); !bytes.Equal(after, before) {
		t.Errorf("a refused user add changed the users file")
	}
}

// ssf publish to the embedded registry: the artifact, its files and the bundle referrer are all served (the
// bundle through the referrers API, with no fallback tag), ssf verify and stock cosign accept the reference,
// and build --publish does the same in one go.
func TestPublishToEmbeddedRegistry(t *testing.T) {
	crane := interopTool(t, "SSF_CRANE", "crane")
	oras := interopTool(t, "SSF_ORAS", "oras")
	cosign := interopTool(t, "SSF_COSIGN", "cosign")
	p, pub := built(t)
	reg := startRegistry(t)

	// Without credentials the publish fails and leaves nothing behind.
	r := ssfEnv(t, p.tmp, reg.env(false), "publish", p.out, "--to", reg.host+"/team/app:v1")
	if r.code != 1 || !strings.Contains(r.stderr, "UNAUTHORIZED") {
		t.Errorf("anonymous publish: exit %d, want 1 with UNAUTHORIZED\n%s%s", r.code, r.stdout, r.stderr)
	}
	reg.assertNoRepo(t, crane, "team/app")

	r = ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", reg.host+"/team/app:v1", "--key", pub)
	if r.code != 0 {
		t.Fatalf("ssf publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ref := lastLine(r.stdout)
	digest, ok := strings.CutPrefix(ref, reg.host+"/team/app@")
	if !ok || !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		t.Fatalf("last line of publish is %q, want %s/team/app@sha256:<hex>", ref, reg.host)
	}
	var subject string
	for _, s := range p.statement()["subject"].([]any) {
		if s := s.(map[string]any); s["name"] == "oci://artifact" {
			subject = "sha256:" + s["digest"].(map[string]any)["sha256"].(string)
		}
	}
	if digest != subject {
		t.Errorf("published %s, but the provenance names the artifact %s", digest, subject)
	}
	var referrer string // the provenance's: publish prints it first, then the SBOMs'
	for _, line := range strings.Split(r.stdout, "\n") {
		if rest, ok := strings.CutPrefix(line, "referrer"); ok && referrer == "" {
			referrer = strings.TrimSpace(rest)
		}
	}
	referrerDigest, ok := strings.CutPrefix(referrer, reg.host+"/team/app@")
	if !ok {
		t.Fatalf("publish printed no referrer in %s/team/app:\n%s", reg.host, r.stdout)
	}
	if got := strings.TrimSpace(reg.must(t, reg.dir, crane, "digest", reg.host+"/team/app:v1")); got != digest {
		t.Errorf("tag v1 resolves to %s, want %s", got, digest)
	}

	t.Run("ssf verify", func(t *testing.T) {
		r := ssfEnv(t, p.tmp, reg.env(true), "verify", ref, "--key", pub)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+ref) {
			t.Fatalf("ssf verify %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
		}
		r = ssfEnv(t, p.tmp, reg.env(true), "verify", ref, "--key", otherFactoryKey(t, p))
		if r.code != 1 {
			t.Errorf("ssf verify with another factory's key: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		// By tag, and a tag or digest the registry does not have.
		r = ssfEnv(t, p.tmp, reg.env(true), "verify", reg.host+"/team/app:v1", "--key", pub)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+ref+" (tag ") {
			t.Errorf("ssf verify %s/team/app:v1: exit %d, want %s verified\n%s%s", reg.host, r.code, ref, r.stdout, r.stderr)
		}
		for _, missing := range []string{reg.host + "/team/app:v2", reg.host + "/team/app@sha256:" + strings.Repeat("1", 64)} {
			r = ssfEnv(t, p.tmp, reg.env(true), "verify", missing, "--key", pub)
			if r.code != 1 || !strings.Contains(r.stderr, missing+": not found in the registry") {
				t.Errorf("ssf verify %s: exit %d, want 1 saying it is not found in the registry\n%s%s", missing, r.code, r.stdout, r.stderr)
			}
		}
	})

	t.Run("oras pull restores the outputs", func(t *testing.T) {
		dest := t.TempDir()
		reg.must(t, dest, oras, "pull", "--plain-http", "-o", dest, ref)
		want := map[string][]byte{}
		for _, f := range []string{"artifact", "bin/readme"} {
			data, err := os.ReadFile(filepath.Join(p.out, f))
			if err != nil {
				t.Fatal(err)
			}
			want[f] = data
		}
		assertFiles(t, dest, want)
	})

	t.Run("cosign verify-attestation", func(t *testing.T) {
		tr := filepath.Join(reg.dir, "trusted_root.json")
		if err := os.WriteFile(tr, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		args := func(key string) []string {
			return []string{"verify-attestation", "--key", key, "--trusted-root", tr, "--insecure-ignore-tlog",
				"--type", "slsaprovenance1", ref}
		}
		reg.must(t, reg.dir, cosign, args(pub)...)
		if res := reg.tool(t, true, reg.dir, cosign, args(otherFactoryKey(t, p))...); res.code == 0 {
			t.Errorf("cosign accepted %s with another factory's key:\n%s%s", ref, res.stdout, res.stderr)
		}
	})

	t.Run("bundle is a referrer", func(t *testing.T) {
		for _, withCreds := range []bool{true, false} {
			all := reg.referrers(t, "team/app", digest, withCreds)
			provenance := provenanceReferrers(all)
			sboms := slices.DeleteFunc(slices.Clone(all), isProvenanceReferrer)
			if len(provenance) != 1 || provenance[0].Digest != referrerDigest || provenance[0].ArtifactType != bundleArtifactType ||
				provenance[0].MediaType != ociManifestType {
				t.Errorf("provenance referrers of %s (credentials %v) = %+v, want the one bundle referrer %s", digest, withCreds, provenance, referrerDigest)
			}
			// And an SPDX and a CycloneDX SBOM of each output.
			types := map[string]int{}
			for _, d := range sboms {
				types[d.Annotations["dev.sigstore.bundle.predicateType"]]++
			}
			if n := len(p.statement()["subject"].([]any)) - 1; types["https://spdx.dev/Document"] != n || types["https://cyclonedx.org/bom"] != n || len(sboms) != 2*n {
				t.Errorf("SBOM referrers of %s = %v, want an SPDX and a CycloneDX one for each of %d outputs", digest, types, n)
			}
		}
		raw := reg.must(t, reg.dir, crane, "manifest", reg.host+"/team/app@"+referrerDigest)
		if got := "sha256:" + sha256Hex([]byte(raw)); got != referrerDigest {
			t.Errorf("referrer manifest hashes to %s, want %s", got, referrerDigest)
		}
		var m ociManifest
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != bundleArtifactType || m.Subject == nil || m.Subject.Digest != digest || len(m.Layers) != 1 ||
			m.Layers[0].MediaType != bundleArtifactType {
			t.Fatalf("referrer manifest is not a bundle attached to %s:\n%s", digest, raw)
		}
		bundle, err := os.ReadFile(filepath.Join(p.out, "attestations", "provenance.sigstore.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := reg.must(t, reg.dir, crane, "blob", reg.host+"/team/app@"+m.Layers[0].Digest); got != string(bundle) {
			t.Errorf("the referrer's layer is not the build's bundle byte for byte")
		}

		var disc struct {
			Referrers []ociDescriptor `json:"referrers"`
		}
		out := reg.must(t, reg.dir, oras, "discover", "--plain-http", "--format", "json", ref)
		if err := json.Unmarshal([]byte(out), &disc); err != nil {
			t.Fatalf("oras discover: %v\n%s", err, out)
		}
		if prov := provenanceReferrers(disc.Referrers); len(prov) != 1 || prov[0].Digest != referrerDigest || prov[0].ArtifactType != bundleArtifactType {
			t.Errorf("oras discover found %+v, want the provenance bundle referrer %s", disc.Referrers, referrerDigest)
		}

		// The registry has the referrers API, so there must be no sha256-<hex> fallback tag.
		if got := reg.tags(t, crane, "team/app"); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("crane ls team/app = %v, want only [v1] (no fallback tag)", got)
		}
		fallback := "sha256-" + strings.TrimPrefix(digest, "sha256:")
		if resp, body := reg.get(t, "team/app/manifests/"+fallback, true); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET manifest %s: %s, want 404\n%s", fallback, resp.Status, body)
		}
	})

	t.Run("build --publish", func(t *testing.T) {
		q := newProject(t, simpleTask)
		q.write()
		r := ssfEnv(t, q.tmp, reg.env(true), "build", "-f", q.pipeline, "--source", q.src, "--out", q.out,
			"--publish", reg.host+"/team/app2:v1")
		if r.code != 0 {
			t.Fatalf("build --publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		ref := lastLine(r.stdout)
		digest, ok := strings.CutPrefix(ref, reg.host+"/team/app2@")
		if !ok || !strings.HasPrefix(digest, "sha256:") {
			t.Fatalf("last line of build --publish is %q, want %s/team/app2@sha256:...", ref, reg.host)
		}
		if r := ssfEnv(t, q.tmp, reg.env(true), append([]string{"verify", ref}, asRun...)...); r.code != 0 { // signed by identity, the default
			t.Errorf("ssf verify %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
		}
		if got := strings.TrimSpace(reg.must(t, reg.dir, crane, "digest", reg.host+"/team/app2:v1")); got != digest {
			t.Errorf("tag v1 of app2 resolves to %s, want %s", got, digest)
		}
		if got := reg.tags(t, crane, "team/app2"); !slices.Equal(got, []string{"v1"}) {
			t.Errorf("crane ls team/app2 = %v, want only [v1]", got)
		}
		if refs := provenanceReferrers(reg.referrers(t, "team/app2", digest, true)); len(refs) != 1 || refs[0].ArtifactType != bundleArtifactType {
			t.Errorf("provenance referrers of %s = %+v, want one bundle", digest, refs)
		}
	})

	// What was pushed is listed by crane catalog (the /v2/_catalog API) and by ssf registry ls, which reads
	// $SSF_HOME/registry without a server; ls REPO gives each tag and its digest.
	t.Run("catalog and registry ls", func(t *testing.T) {
		if got := strings.Fields(reg.must(t, reg.dir, crane, "catalog", reg.host)); !slices.Equal(got, []string{"team/app", "team/app2"}) {
			t.Errorf("crane catalog = %q, want [team/app team/app2]", got)
		}
		if res := reg.tool(t, false, reg.dir, crane, "catalog", reg.host); res.code != 0 || !strings.Contains(res.stdout, "team/app2") {
			t.Errorf("anonymous crane catalog on a registry with anonymous pull: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		ls := func(args ...string) result {
			cmd := exec.Command(ssfBin, append([]string{"registry", "ls"}, args...)...)
			cmd.Env = append(os.Environ(), "SSF_HOME="+reg.home)
			return runCmd(t, cmd)
		}
		if r := ls(); r.code != 0 || r.stdout != "team/app\nteam/app2\n" {
			t.Errorf("ssf registry ls: exit %d, stdout %q, want team/app and team/app2\n%s", r.code, r.stdout, r.stderr)
		}
		if r := ls("team/app"); r.code != 0 || r.stdout != "v1  "+digest+"\n" {
			t.Errorf("ssf registry ls team/app: exit %d, stdout %q, want \"v1  %s\"\n%s", r.code, r.stdout, digest, r.stderr)
		}
		for _, bad := range []struct{ repo, want string }{{"team/none", `no repository "team/none"`}, {"Team/App", "invalid repository name"}} {
			if r := ls(bad.repo); r.code != 2 || !strings.Contains(r.stderr, bad.want) {
				t.Errorf("ssf registry ls %s: exit %d, want 2 with %q\n%s", bad.repo, r.code, bad.want, r.stderr)
			}
		}
	})
}
