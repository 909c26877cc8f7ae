package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
)

const simpleTask = `
    - name: make
      steps:
        - name: write
          run: |
            printf 'artifact\n' > "$SSF_OUTPUTS/artifact"
            mkdir -p "$SSF_OUTPUTS/bin" && cat README > "$SSF_OUTPUTS/bin/readme"
      outputs: [artifact, bin/readme]
`

// built is a finished build signed with the factory's provenance key (--signer key), with the public key written
// next to it. builtDefault is the same build signed as ssf build signs by default, by identity.
func built(t *testing.T) (*project, string) {
	t.Helper()
	p := newProject(t, simpleTask)
	p.mustBuild("--signer", "key")
	pub := filepath.Join(p.dir, "provenance.pub")
	r := ssf(t, p.tmp, "keys", "public")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("ssf keys public: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := os.WriteFile(pub, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, pub
}

// TestVerify: a default build (signed by identity) verifies under its run identity with ssf verify, and each
// expectation that does not hold fails it.
func TestVerify(t *testing.T) {
	p := builtDefault(t)
	bundle := filepath.Join(p.out, "attestations", "provenance.sigstore.json")
	st := p.statement()
	deps := st["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)
	sourceDigest := "sha256:" + deps[0].(map[string]any)["digest"].(map[string]any)["sha256"].(string)
	builderID := st["predicate"].(map[string]any)["runDetails"].(map[string]any)["builder"].(map[string]any)["id"].(string)

	tampered := filepath.Join(p.dir, "tampered")
	if err := os.WriteFile(tampered, []byte("artifact!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"output verifies", []string{filepath.Join(p.out, "artifact")}, 0, "verified: "},
		{"nested output verifies", []string{filepath.Join(p.out, "bin/readme")}, 0, "verified: "},
		{"builder id and source digest pinned", []string{filepath.Join(p.out, "artifact"), "--builder-id", builderID, "--source-digest", sourceDigest}, 0, "verified: "},
		{"tampered file", []string{tampered}, 1, "is not a subject of the bundle"},
		{"a log is not a subject", []string{filepath.Join(p.out, "attestations/logs/make.log")}, 1, "is not a subject of the bundle"},
		{"another pipeline's identity", []string{filepath.Join(p.out, "artifact"), "--certificate-identity", identityTD + "/pipeline/other"}, 1, "expected SAN value"},
		{"wrong builder id", []string{filepath.Join(p.out, "artifact"), "--builder-id", "https://evil.example/factory"}, 1, "builder"},
		{"wrong source digest", []string{filepath.Join(p.out, "artifact"), "--source-digest", "sha256:" + strings.Repeat("0", 64)}, 1, "source"},
		{"missing file", []string{filepath.Join(p.dir, "nope")}, 2, "nope"},
		{"missing bundle flag", []string{filepath.Join(p.out, "artifact"), "--bundle", ""}, 2, "--bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"verify", "--bundle", bundle}, asRun...), tt.args...) // a later flag wins
			r := ssf(t, p.tmp, args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Errorf("output does not contain %q:\n%s%s", tt.want, r.stdout, r.stderr)
			}
		})
	}
}

// TestVerifyKeyBuild: a --signer key build verifies with the factory's public key, and another factory's key is
// refused as "not signed by this key", with sigstore-go's own words only under -v.
func TestVerifyKeyBuild(t *testing.T) {
	p, pub := built(t)
	bundle := filepath.Join(p.out, "attestations", "provenance.sigstore.json")
	otherKey := filepath.Join(p.dir, "other.pub")
	other := exec.Command("sh", "-c", `"$0" init >/dev/null && "$0" keys public > "$1"`, ssfBin, otherKey)
	other.Env = append(os.Environ(), "SSF_HOME="+filepath.Join(p.dir, "otherhome"))
	if out, err := other.CombinedOutput(); err != nil {
		t.Fatalf("making another factory key: %v\n%s", err, out)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"output verifies", []string{filepath.Join(p.out, "artifact")}, 0, "verified: "},
		{"wrong key", []string{filepath.Join(p.out, "artifact"), "--key", otherKey}, 1, "ssf: error: verification failed: " + bundle + " is not signed by this key (" + otherKey + ")\nssf: hint: "},
		{"wrong key, -v", []string{filepath.Join(p.out, "artifact"), "--key", otherKey, "-v"}, 1, "ssf: note: verification failed: the bundle is not signed by this key (sigstore-go rejected it: "},
		{"no key", []string{filepath.Join(p.out, "artifact"), "--key", ""}, 2, "--key KEY.pub for one built with --signer key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"verify", "--bundle", bundle, "--key", pub}, tt.args...)
			r := ssf(t, p.tmp, args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, tt.want) {
				t.Errorf("output does not contain %q:\n%s%s", tt.want, r.stdout, r.stderr)
			}
			// sigstore-go's threshold text is for -v only.
			if verbose := slices.Contains(tt.args, "-v"); strings.Contains(r.stderr, "threshold") != verbose {
				t.Errorf("stderr mentions sigstore-go's threshold: %v, want %v (with -v only):\n%s", !verbose, verbose, r.stderr)
			}
		})
	}
}

// A clean git checkout is recorded by commit, and only its tracked files reach the build.
func TestGitSourceRecordedByCommit(t *testing.T) {
	p := newProject(t, `
    - name: list
      steps:
        - name: ls
          run: ls -A > "$SSF_OUTPUTS/files"
      outputs: [files]
`)
	p.files["ignored.log"] = "not tracked\n"
	p.files[".gitignore"] = "*.log\n"
	p.write()
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", p.src, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "README", ".gitignore")
	git("commit", "-q", "-m", "source")
	commit := git("rev-parse", "HEAD")

	p.mustBuild()
	if got, want := p.output("files"), ".gitignore\nREADME\n"; got != want {
		t.Errorf("the build saw %q, want only the tracked files %q", got, want)
	}
	deps := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)
	src := deps[0].(map[string]any)
	if got := src["digest"].(map[string]any)["gitCommit"]; got != commit {
		t.Errorf("source recorded as %v, want gitCommit %s", src, commit)
	}
	if uri := src["uri"].(string); !strings.HasPrefix(uri, "git+file://") || !strings.HasSuffix(uri, "@"+commit) {
		t.Errorf("source uri = %q", uri)
	}
	r := ssf(t, p.tmp, append([]string{"verify", filepath.Join(p.out, "files"), "--bundle", filepath.Join(p.out, "attestations/provenance.sigstore.json"),
		"--source-digest", "gitCommit:" + commit}, asRun...)...)
	if r.code != 0 {
		t.Errorf("verify --source-digest gitCommit:%s: exit %d\n%s", commit, r.code, r.stderr)
	}
}

// Stock cosign accepts the bundle of a real build, for the real output file.
func TestCosignAcceptsBuild(t *testing.T) {
	cosign := os.Getenv("SSF_COSIGN")
	if cosign == "" {
		cosign, _ = exec.LookPath("cosign")
	}
	if _, err := os.Stat(cosign); cosign == "" || err != nil {
		if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
			t.Fatalf("cosign not found (SSF_COSIGN=%q); make test installs it", cosign)
		}
		t.Skip("cosign not found; make test installs it")
	}
	p, pub := built(t)
	tr := filepath.Join(p.dir, "trusted_root.json")
	if err := os.WriteFile(tr, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(file string) (string, error) {
		cmd := exec.Command(cosign, "verify-blob-attestation", "--bundle", filepath.Join(p.out, "attestations/provenance.sigstore.json"),
			"--key", pub, "--trusted-root", tr, "--insecure-ignore-tlog", "--type", "slsaprovenance1", file)
		cmd.Env = append(os.Environ(), "HOME="+p.dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, f := range []string{"artifact", "bin/readme"} {
		if out, err := run(filepath.Join(p.out, f)); err != nil || !strings.Contains(out, "Verified OK") {
			t.Errorf("cosign rejected %s: %v\n%s", f, err, out)
		}
	}
	tampered := filepath.Join(p.dir, "tampered")
	if err := os.WriteFile(tampered, []byte("artifact!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(tampered); err == nil {
		t.Errorf("cosign accepted a tampered file:\n%s", out)
	}
}

// --pipeline-digest pins the pipeline file; -v names every expectation that was not given.
func TestVerifyPipelineDigestAndUnchecked(t *testing.T) {
	p := builtDefault(t)
	bundle := filepath.Join(p.out, "attestations", "provenance.sigstore.json")
	pipeline, err := os.ReadFile(p.pipeline)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pipeline)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	artifact := filepath.Join(p.out, "artifact")
	base := append([]string{"verify", artifact, "--bundle", bundle}, asRun...)

	r := ssf(t, p.tmp, append(base, "--pipeline-digest", digest, "-v")...)
	if r.code != 0 || !strings.Contains(r.stderr, "pipeline digest is "+digest) {
		t.Fatalf("right pipeline digest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	other := "sha256:" + strings.Repeat("0", 64)
	r = ssf(t, p.tmp, append(base, "--pipeline-digest", other)...)
	if r.code != 1 || !strings.Contains(r.stderr, "pipeline digest is "+digest+", want "+other) {
		t.Errorf("wrong pipeline digest: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = ssf(t, p.tmp, append(base, "--pipeline-digest", strings.Repeat("0", 64))...)
	if r.code != 2 || !strings.Contains(r.stderr, "sha256:<64 hex digits>") {
		t.Errorf("malformed pipeline digest: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}

	var builderDigest string
	for _, d := range p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any) {
		if d := d.(map[string]any); d["name"] == "builder" {
			builderDigest = "sha256:" + d["digest"].(map[string]any)["sha256"].(string)
		}
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--builder-digest", builderDigest}, 0, "verified: "},
		{[]string{"--builder-digest", other}, 1, "builder sha256 digest is"},
		{[]string{"--param", "MODE=release"}, 1, `param "MODE" was not set by the build`},
		{[]string{"--param", "MODE"}, 2, "want NAME=VALUE"},
	} {
		r := ssf(t, p.tmp, append(base, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stdout+r.stderr, tt.want) {
			t.Errorf("verify %v: exit %d, want %d with %q\n%s%s", tt.args, r.code, tt.code, tt.want, r.stdout, r.stderr)
		}
	}

	r = ssf(t, p.tmp, append(base, "-v")...)
	if r.code != 0 {
		t.Fatalf("verify -v: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"not checked: builder id", "require it with --builder-id",
		"not checked: builder image", "require it with --builder-digest",
		"not checked: pipeline digest", "require it with --pipeline-digest",
		"not checked: params", "require it with --param",
		"not checked: source digest", "require it with --source-digest",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("verify -v does not say %q:\n%s", want, r.stderr)
		}
	}
	r = ssf(t, p.tmp, append(base, "-v", "--pipeline-digest", digest)...)
	if strings.Contains(r.stderr, "not checked: pipeline digest") {
		t.Errorf("a checked pipeline digest is listed as not checked:\n%s", r.stderr)
	}
}

// hangingRegistry accepts connections on loopback and, with trickle, answers each request with headers and then
// one byte of body every interval, forever; without it, never answers at all. It returns host:port.
func hangingRegistry(t *testing.T, trickle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if trickle > 0 {
					buf := make([]byte, 4096)
					c.Read(buf)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
				}
				tick := time.NewTicker(max(trickle, time.Second))
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						if trickle > 0 {
							if _, err := c.Write([]byte(" ")); err != nil {
								return
							}
						}
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// A registry that never answers, or trickles a byte now and then, cannot hold ssf verify: --timeout ends the
// first, --deadline the second, each with a message that says so.
func TestVerifyReferenceTimesOut(t *testing.T) {
	tmp := t.TempDir()
	pub := throwawayPublicKey(t, tmp)
	digest := "@sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		name    string
		trickle time.Duration
		flags   []string
		want    string
	}{
		{"silent", 0, []string{"--timeout", "1s", "--deadline", "15s"}, "registry made no progress: nothing from GET"},
		{"trickling", 300 * time.Millisecond, []string{"--timeout", "2s", "--deadline", "3s"}, "did not finish within --deadline 3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := hangingRegistry(t, tt.trickle)
			start := time.Now()
			r := ssf(t, tmp, append([]string{"verify", host + "/r" + digest, "--key", pub}, tt.flags...)...)
			took := time.Since(start)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, want 1 with %q:\n%s%s", r.code, tt.want, r.stdout, r.stderr)
			}
			if took > 20*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
	if r := ssf(t, tmp, "verify", "127.0.0.1:1/r"+digest, "--key", pub, "--timeout", "0s"); r.code != 2 {
		t.Errorf("--timeout 0s: exit %d, want 2\n%s", r.code, r.stderr)
	}
}

// ssf verify REF passes on the one good bundle when hostile referrers sit beside it, and -v notes each one it
// skipped.
func TestVerifyReferenceSkipsMalformedReferrers(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := sign.PublicKeyPEM(&key.PublicKey)
	pub := filepath.Join(tmp, "key.pub")
	os.WriteFile(pub, pem, 0o644)

	// A finished build: one output, its subjects, a signed bundle.
	out := filepath.Join(tmp, "out")
	os.MkdirAll(out, 0o755)
	data := []byte("artifact\n")
	os.WriteFile(filepath.Join(out, "artifact"), data, 0o644)
	files := []oci.File{{Path: "artifact", Digest: digest.FromBytes(data), Size: int64(len(data))}}
	subjects, err := oci.BuildSubjects(context.Background(), out, files)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	b := provenance.Build{
		BuilderID: "https://ssf.dev/test", InvocationID: "run-1", StartedOn: now, FinishedOn: now,
		PipelineName: "p", PipelineDigest: digest.FromBytes([]byte("p")), SourceURI: "file:///src",
		Dependencies: []provenance.ResourceDescriptor{{Name: "source", URI: "file:///src", Digest: provenance.Digest{"sha256": sha256Hex(nil)}}},
		Subjects:     []provenance.Subject{{Name: "artifact", Digest: digest.FromBytes(data)}},
	}
	for _, s := range subjects {
		b.Subjects = append(b.Subjects, provenance.Subject{Name: s.Name, Digest: s.Digest})
	}
	st, err := provenance.Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.NewSigner(key).Statement(ctx, st)
	if err != nil {
		t.Fatal(err)
	}

	// A registry without the referrers API whose fallback index we replace after publishing.
	var mu sync.Mutex
	var fallbackPath string
	var fallback []byte
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(false))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		body := fallback
		match := r.URL.Path == fallbackPath && body != nil && r.Method == http.MethodGet
		mu.Unlock()
		if match {
			w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
			w.Write(body)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer s.Close()
	host := strings.TrimPrefix(s.URL, "http://")
	repo, _, _ := oci.ParseTarget(host + "/app")
	pubd, err := oci.Publish(ctx, oci.PublishRequest{Dir: out, Bundle: bundle, Repo: repo, WithoutVerificationUnsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimPrefix(pubd.Artifact, host+"/app@")
	resp, err := http.Get(s.URL + "/v2/app/manifests/" + strings.Replace(digest, ":", "-", 1))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]any
	json.NewDecoder(resp.Body).Decode(&idx)
	resp.Body.Close()
	bogus := map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "artifactType": content.BundleMediaType, "digest": "sha256:" + strings.Repeat("1", 64), "size": 1 << 30}
	idx["manifests"] = append([]any{bogus}, idx["manifests"].([]any)...)
	mu.Lock()
	fallbackPath = "/v2/app/manifests/" + strings.Replace(digest, ":", "-", 1)
	fallback, _ = json.Marshal(idx)
	mu.Unlock()

	r := ssf(t, tmp, "verify", pubd.Artifact, "--key", pub, "-v")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+pubd.Artifact) {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "ssf: note: skipped: referrer sha256:"+strings.Repeat("1", 64)+": a application/vnd.oci.image.manifest.v1+json of 1073741824 bytes is not a bundle manifest") {
		t.Errorf("verify -v does not note the skipped referrer:\n%s", r.stderr)
	}
}

// throwawayPublicKey writes the public half of a fresh key, which signed nothing, to dir/key.pub and returns its
// path: for checks that must fail, or never get as far as a signature.
func throwawayPublicKey(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := sign.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return pub
}
