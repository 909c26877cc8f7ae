package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/interoptest"
)

// interopTool finds an external tool: $env, then .tools/NAME in the module root, then $PATH. Without it the
// test is skipped, or fails under SSF_REQUIRE_INTEROP=1 (make test).
func interopTool(t *testing.T, env, name string) string { return interoptest.Tool(t, env, name) }

// distributionRegistry starts Debian's docker-registry (distribution 2.8, which has no referrers API) on a
// loopback port and returns its host:port.
func distributionRegistry(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SSF_DOCKER_REGISTRY")
	if bin == "" {
		bin = "/usr/bin/docker-registry"
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("SSF_REQUIRE_INTEROP") == "1" {
			t.Fatalf("docker-registry not found at %s (apt-get install docker-registry)", bin)
		}
		t.Skipf("docker-registry not found at %s (apt-get install docker-registry)", bin)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("docker-registry log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not come up on %s: %v\n%s", addr, err, logs.String())
		}
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// A published build can be pulled back with oras, verified by ssf and by stock cosign from the registry, and
// nothing else verifies as it.
func TestPublishToDistribution(t *testing.T) {
	p, pub := built(t)
	host := distributionRegistry(t)
	oras := interopTool(t, "SSF_ORAS", "oras")
	cosign := interopTool(t, "SSF_COSIGN", "cosign")

	r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/team/app:v1", "--key", pub)
	if r.code != 0 {
		t.Fatalf("ssf publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ref := lastLine(r.stdout)
	if !strings.HasPrefix(ref, host+"/team/app@sha256:") {
		t.Fatalf("last line of publish is %q, want %s/team/app@sha256:...", ref, host)
	}
	var artifactSubject string
	for _, s := range p.statement()["subject"].([]any) {
		s := s.(map[string]any)
		if s["name"] == "oci://artifact" {
			artifactSubject = s["digest"].(map[string]any)["sha256"].(string)
		}
	}
	if want := host + "/team/app@sha256:" + artifactSubject; ref != want {
		t.Errorf("pushed %s, but the provenance names the artifact %s", ref, want)
	}

	// Publishing the same build again (as build --publish would) gives the same reference.
	if r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/team/app"); r.code != 0 || lastLine(r.stdout) != ref {
		t.Errorf("second publish: exit %d, last line %q, want %q\n%s", r.code, lastLine(r.stdout), ref, r.stderr)
	}

	t.Run("ssf verify", func(t *testing.T) {
		r := ssf(t, p.tmp, "verify", ref, "--key", pub, "-v")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+ref) {
			t.Fatalf("ssf verify %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
		}
		// By tag: resolved to the digest, which the verdict names.
		r = ssf(t, p.tmp, "verify", host+"/team/app:v1", "--key", pub)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+ref+" (tag "+host+"/team/app:v1, ") {
			t.Fatalf("ssf verify %s/team/app:v1: exit %d, want the verdict naming %s\n%s%s", host, r.code, ref, r.stdout, r.stderr)
		}
	})

	t.Run("oras pull restores the files", func(t *testing.T) {
		dest := t.TempDir()
		cmd := exec.Command(oras, "pull", "--plain-http", "-o", dest, ref)
		cmd.Env = append(os.Environ(), "HOME="+p.dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("oras pull: %v\n%s", err, out)
		}
		for _, f := range []string{"artifact", "bin/readme"} {
			want, _ := os.ReadFile(filepath.Join(p.out, f))
			got, err := os.ReadFile(filepath.Join(dest, f))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("oras restored %s as %q (%v), want %q", f, got, err, want)
			}
		}
	})

	t.Run("cosign verify-attestation", func(t *testing.T) {
		tr := filepath.Join(p.dir, "trusted_root.json")
		if err := os.WriteFile(tr, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		run := func(ref, key, typ string) (string, error) {
			cmd := exec.Command(cosign, "verify-attestation", "--key", key, "--trusted-root", tr, "--insecure-ignore-tlog",
				"--type", typ, ref)
			cmd.Env = append(os.Environ(), "HOME="+p.dir)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		// The provenance, and each output's SBOMs, which publish attached as referrers too.
		for _, typ := range []string{"slsaprovenance1", "spdxjson", "cyclonedx"} {
			if out, err := run(ref, pub, typ); err != nil {
				t.Fatalf("cosign --type %s rejected %s: %v\n%s", typ, ref, err, out)
			}
		}
		otherKey := otherFactoryKey(t, p)
		if out, err := run(ref, otherKey, "slsaprovenance1"); err == nil {
			t.Errorf("cosign accepted %s with another factory's key:\n%s", ref, out)
		}
	})

	t.Run("other references are rejected", func(t *testing.T) {
		// A manifest the provenance does not name: the same files under a tag, pushed by oras with its own
		// manifest (a different digest), has no bundle attached, and a bundle copied onto it would not name it.
		src := t.TempDir()
		data, _ := os.ReadFile(filepath.Join(p.out, "artifact"))
		os.WriteFile(filepath.Join(src, "artifact"), data, 0o644)
		cmd := exec.Command(oras, "push", "--plain-http", host+"/team/app:other", "artifact")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "HOME="+p.dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("oras push: %v\n%s", err, out)
		}
		digest := ""
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.Index(l, "sha256:"); i >= 0 && strings.HasPrefix(l, "Digest:") {
				digest = strings.TrimSpace(l[i:])
			}
		}
		if digest == "" {
			t.Fatalf("no digest in oras output:\n%s", out)
		}
		other := host + "/team/app@" + digest
		tests := []struct {
			name string
			args []string
			code int
			want string
		}{
			{"unattested manifest", []string{other, "--key", pub}, 1, "no provenance bundles"},
			{"wrong key", []string{ref, "--key", otherFactoryKey(t, p)}, 1, "verification failed: " + ref + " is not signed by this key (" + otherFactoryKey(t, p) + ")\nssf: hint: "},
			{"unattested tag", []string{host + "/team/app:other", "--key", pub}, 1, "no provenance bundles"},
			{"unknown digest", []string{host + "/team/app@sha256:" + strings.Repeat("0", 64), "--key", pub}, 1, "@sha256:" + strings.Repeat("0", 64) + ": not found in the registry"},
			{"unknown tag", []string{host + "/team/app:nope", "--key", pub}, 1, "team/app:nope: not found in the registry"},
			{"unknown repository", []string{host + "/team/nothing:v1", "--key", pub}, 1, "not found in the registry"},
			{"no registry host", []string{"team/app:v1", "--key", pub}, 2, `"team/app:v1" is neither a file nor a registry reference`},
			{"bundle flag with a reference", []string{ref, "--key", pub, "--bundle", filepath.Join(p.out, "attestations/provenance.sigstore.json")}, 2, "--bundle"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := ssf(t, p.tmp, append([]string{"verify"}, tt.args...)...)
				if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
					t.Errorf("exit %d, want %d with %q:\n%s%s", r.code, tt.code, tt.want, r.stdout, r.stderr)
				}
			})
		}
	})
}

// A build whose output was changed after it was signed is not published.
func TestPublishRefusesChangedOutput(t *testing.T) {
	p, _ := built(t)
	host := distributionRegistry(t)
	if err := os.WriteFile(filepath.Join(p.out, "artifact"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/team/app")
	if r.code != 1 || !strings.Contains(r.stderr, `output "artifact" has sha256:`) {
		t.Fatalf("exit %d, want 1 naming the changed output:\n%s%s", r.code, r.stdout, r.stderr)
	}
	resp, err := http.Get("http://" + host + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if strings.Contains(body.String(), "team/app") {
		t.Errorf("a refused publish created the repository: %s", body.String())
	}
}

// ssf build --publish builds, signs and pushes in one go; the pushed reference is the last line.
func TestBuildPublish(t *testing.T) {
	p := newProject(t, simpleTask)
	host := distributionRegistry(t)
	r := p.build("--publish", host+"/built/app:latest")
	if r.code != 0 {
		t.Fatalf("build --publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ref := lastLine(r.stdout)
	if !strings.HasPrefix(ref, host+"/built/app@sha256:") {
		t.Fatalf("last line %q is not the pushed reference", ref)
	}
	// Signed by identity, the default: the summary says how to verify, and the pushed reference verifies so.
	if want := "verify      ssf verify " + filepath.Join(p.out, "artifact") + " --bundle " + filepath.Join(p.out, "attestations/provenance.sigstore.json") +
		" " + strings.Join(asRun, " ") + "\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("the build's summary lacks %q:\n%s", want, r.stdout)
	}
	if r := ssf(t, p.tmp, append([]string{"verify", ref}, asRun...)...); r.code != 0 || !strings.Contains(r.stdout, ", signed by "+runIdentity) {
		t.Errorf("verify %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
	}
	// Without an identity: bad usage, and the hint gives this factory's values.
	if r := ssf(t, p.tmp, "verify", ref); r.code != 2 || !strings.Contains(r.stderr, "--certificate-identity spiffe://ssf.local/pipeline/NAME --certificate-oidc-issuer "+identityIssuer) {
		t.Errorf("verify %s with no signer named: exit %d, want 2 with a hint naming the flags\n%s", ref, r.code, r.stderr)
	}

	bad := newProject(t, simpleTask)
	if r := bad.build("--publish", "not a reference"); r.code != 2 || !strings.Contains(r.stderr, "--publish") {
		t.Errorf("bad --publish: exit %d, want 2 before building\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(bad.out); !os.IsNotExist(err) {
		t.Errorf("a bad --publish still built into %s", bad.out)
	}
}

// otherFactoryKey returns the public key file of a second, unrelated factory.
func otherFactoryKey(t *testing.T, p *project) string {
	t.Helper()
	key := filepath.Join(p.dir, "other.pub")
	if _, err := os.Stat(key); err == nil {
		return key
	}
	cmd := exec.Command("sh", "-c", `"$0" init >/dev/null && "$0" keys public > "$1"`, ssfBin, key)
	cmd.Env = append(os.Environ(), "SSF_HOME="+filepath.Join(p.dir, "otherhome"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making another factory key: %v\n%s", err, out)
	}
	return key
}

// An output that is an OCI image layout tarball is also pushed as that image, by the digest its provenance names,
// with the bundle attached, so stock cosign (every check on: the default build is signed by identity) accepts the
// image reference a cluster would run; the --publish tag
// names that image (crane pulls it), and TAG.files the files artifact.
func TestPublishImageOutput(t *testing.T) {
	p := newProject(t, `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/image.tar"
      outputs: [image.tar]
`)
	host := distributionRegistry(t)
	cosign := interopTool(t, "SSF_COSIGN", "cosign")
	crane := interopTool(t, "SSF_CRANE", "crane")
	p.write()
	digest := p.addRandomImage("image.tar", 1024)
	r := p.build("--publish", host+"/team/image:v1")
	if r.code != 0 {
		t.Fatalf("build --publish: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	imageRef := host + "/team/image@" + digest.String()
	if !strings.Contains(r.stdout, "image       image.tar  "+imageRef+"\n") {
		t.Fatalf("publish did not report the image %s:\n%s", imageRef, r.stdout)
	}
	// One image: v1 (and v1-image) is the runnable image, v1.files the files artifact, which stays the last line.
	artifactRef := lastLine(r.stdout)
	artifactDigest, ok := strings.CutPrefix(artifactRef, host+"/team/image@")
	if !ok || artifactDigest == digest.String() {
		t.Fatalf("last line %q is not the files artifact's reference", artifactRef)
	}
	for tag, want := range map[string]string{"v1": digest.String(), "v1-image": digest.String(), "v1.files": artifactDigest} {
		if !strings.Contains(r.stdout, "tag         "+host+"/team/image:"+tag+"  "+host+"/team/image@"+want+"\n") {
			t.Errorf("publish did not report tag %s -> %s:\n%s", tag, want, r.stdout)
		}
		out, err := exec.Command(crane, "digest", "--insecure", host+"/team/image:"+tag).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("crane digest team/image:%s = %s (%v), want %s", tag, out, err, want)
		}
	}
	if r := ssf(t, p.tmp, append([]string{"verify", imageRef}, asRun...)...); r.code != 0 || !strings.Contains(r.stdout, `subject "oci://image/image.tar"`) {
		t.Errorf("ssf verify %s: exit %d\n%s%s", imageRef, r.code, r.stdout, r.stderr)
	}
	// By tag, as a user who only knows REPO:TAG would: the image's digest is what is verified.
	tagRef := host + "/team/image:v1"
	if r := ssf(t, p.tmp, append([]string{"verify", tagRef}, asRun...)...); r.code != 0 || !strings.HasPrefix(r.stdout, "verified: "+imageRef+" (tag "+tagRef+`, subject "oci://image/image.tar")`) {
		t.Errorf("ssf verify %s: exit %d, want %s verified\n%s%s", tagRef, r.code, imageRef, r.stdout, r.stderr)
	}
	// Stock cosign, every check on (log entry, SCT, identity), with the factory's exported trusted root.
	cmd := exec.Command(cosign, append(append([]string{"verify-attestation", "--trusted-root", exportTrust(t, p)}, asRun...),
		"--type", "slsaprovenance1", imageRef)...)
	cmd.Env = append(os.Environ(), "HOME="+p.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cosign rejected the image %s: %v\n%s", imageRef, err, out)
	}
}

// ssf publish verifies the bundle before it pushes anything: by default against the local factory's key, or
// --key. A bundle another factory signed exits 1 and leaves the registry untouched.
func TestPublishVerifiesBeforePushing(t *testing.T) {
	p, pub := built(t)
	reg := startRegistry(t)
	otherKey := otherFactoryKey(t, p) // also initialises p.dir/otherhome
	otherHome := filepath.Join(p.dir, "otherhome")
	noHome := filepath.Join(p.dir, "nohome")
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"local factory is another factory", []string{"SSF_HOME=" + otherHome}, nil, 1,
			"refusing to publish: verification failed: " + filepath.Join(p.out, "attestations/provenance.sigstore.json") + " is not signed by this key (the local factory's key; give --key KEY.pub"},
		{"--key of another factory", nil, []string{"--key", otherKey}, 1, " is not signed by this key (" + otherKey + ")"},
		{"--key of another factory verbose", nil, []string{"--key", otherKey, "-v"}, 1, "ssf: note: verification failed: the bundle is not signed by this key (sigstore-go rejected it: "},
		{"no local factory and no --key", []string{"SSF_HOME=" + noHome}, nil, 2, "give --key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := "refused/" + strings.ReplaceAll(strings.ReplaceAll(tt.name, " ", "-"), "--", "")
			env := append(reg.env(true), tt.env...)
			r := ssfEnv(t, p.tmp, env, append([]string{"publish", p.out, "--to", reg.host + "/" + repo + ":v1"}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s%s", r.code, tt.code, tt.want, r.stdout, r.stderr)
			}
			if verbose := strings.HasSuffix(tt.name, "verbose"); strings.Contains(r.stderr, "threshold") != verbose {
				t.Errorf("stderr mentions sigstore-go's threshold: %v, want %v (with -v only):\n%s", !verbose, verbose, r.stderr)
			}
			if resp, body := reg.get(t, repo+"/tags/list", true); resp.StatusCode != http.StatusNotFound {
				t.Errorf("a refused publish left %s in the registry: %s %s", repo, resp.Status, body)
			}
		})
	}
	// The same build, verified with the factory that made it, goes up.
	for _, args := range [][]string{nil, {"--key", pub}} {
		r := ssfEnv(t, p.tmp, reg.env(true), append([]string{"publish", p.out, "--to", reg.host + "/accepted/app"}, args...)...)
		if r.code != 0 || !strings.HasPrefix(lastLine(r.stdout), reg.host+"/accepted/app@sha256:") {
			t.Errorf("publish %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// A step that writes an OCI layout whose index.json names an image it does not contain (any image anywhere) does
// not get that image named in signed provenance: the build fails, naming the output and the missing manifest.
func TestBuildRefusesForgedImageOutput(t *testing.T) {
	p := newProject(t, `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/image.tar"
      outputs: [image.tar]
`)
	forged := "sha256:" + strings.Repeat("ab", 32)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+forged+`","size":1234}]}`), 0o644)
	p.write()
	p.addTarOf("image.tar", dir)
	r := p.build()
	if r.code != 1 || !strings.Contains(r.stderr, `output "image.tar"`) || !strings.Contains(r.stderr, forged+", which is not in the tarball") {
		t.Fatalf("exit %d, want 1 naming the output and %s:\n%s%s", r.code, forged, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(p.out, "attestations")); !os.IsNotExist(err) {
		t.Errorf("a refused build left provenance in %s", p.out)
	}
}

// A registry that accepts connections and never answers cannot hold ssf publish: --timeout ends it, exit 1.
func TestPublishTimesOut(t *testing.T) {
	p, pub := built(t)
	host := hangingRegistry(t, 0)
	start := time.Now()
	r := ssf(t, p.tmp, "publish", p.out, "--to", host+"/app", "--key", pub, "--timeout", "1s", "--deadline", "15s")
	if r.code != 1 || !strings.Contains(r.stderr, "registry made no progress") {
		t.Errorf("exit %d, want 1 saying the registry made no progress:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if took := time.Since(start); took > 12*time.Second {
		t.Errorf("took %s with --timeout 1s", took)
	}
}

// addRandomImage puts an OCI image layout tarball of a random single-layer image (size bytes of layer) into the
// project's source as name, after p.write(); it returns the image's manifest digest.
func (p *project) addRandomImage(name string, size int64) v1.Hash {
	p.t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		p.t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	digest, err := img.Digest()
	if err != nil {
		p.t.Fatal(err)
	}
	lp, err := layout.Write(p.t.TempDir(), empty.Index)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		p.t.Fatal(err)
	}
	p.addTarOf(name, string(lp))
	return digest
}

// addTarOf puts the deterministic tar of dir into the project's source as name (an image layout, say, that a step
// then copies to its outputs).
func (p *project) addTarOf(name, dir string) {
	p.t.Helper()
	var tarball bytes.Buffer
	if _, err := archive.WriteTree(context.Background(), &tarball, dir, nil); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.src, name), tarball.Bytes(), 0o644); err != nil {
		p.t.Fatal(err)
	}
}
