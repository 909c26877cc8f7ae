package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The structs below are docs/cli-json.md written as Go: decoding refuses any field they do not name, so a field
// added to the output without the schema (and this test) knowing fails here.

type buildDoc struct {
	InvocationID    string    `json:"invocationId"`
	DurationSeconds float64   `json:"durationSeconds"`
	Source          sourceDoc `json:"source"` // source_test.go
	Builder         string    `json:"builder"`
	Out             string    `json:"out"`
	Outputs         []struct {
		Path   string `json:"path"`
		File   string `json:"file"`
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	} `json:"outputs"`
	Provenance string `json:"provenance"`
	SBOMs      []struct {
		Output    string `json:"output"`
		SPDX      string `json:"spdx"`
		CycloneDX string `json:"cyclonedx"`
	} `json:"sboms"`
	Publish          *publishDoc `json:"publish"`
	TaskAttestations []struct {
		Task     string `json:"task"`
		Bundle   string `json:"bundle"`
		Identity string `json:"identity"`
	} `json:"taskAttestations"`
	SignedBy string `json:"signedBy"`
	Issuer   string `json:"issuer"`
}

type publishDoc struct {
	Artifact  string            `json:"artifact"`
	Images    map[string]string `json:"images"`
	Referrers []string          `json:"referrers"`
	Tags      []struct {
		Tag string `json:"tag"`
		Ref string `json:"ref"`
	} `json:"tags"`
}

type verifyDoc struct {
	Verified   bool     `json:"verified"`
	File       string   `json:"file"`
	Ref        string   `json:"ref"`
	Tag        string   `json:"tag"`
	Subject    string   `json:"subject"`
	Digest     string   `json:"digest"`
	BuilderID  string   `json:"builderId"`
	Pipeline   string   `json:"pipeline"`
	Invocation string   `json:"invocation"`
	Checks     []string `json:"checks"`
	Unchecked  []string `json:"unchecked"`
	Skipped    []string `json:"skipped"`
}

type errorDoc struct {
	Error    string `json:"error"`
	Hint     string `json:"hint"`
	ExitCode int    `json:"exitCode"`
}

// decodeOne fails the test unless stdout is exactly one JSON object on one newline-terminated line, and decodes
// it into v, refusing unknown fields.
func decodeOne(t *testing.T, stdout string, v any) {
	t.Helper()
	if !strings.HasSuffix(stdout, "\n") || strings.Count(stdout, "\n") != 1 || !strings.HasPrefix(stdout, "{") {
		t.Fatalf("stdout is not one newline-terminated JSON object:\n%q", stdout)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding stdout: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", stdout)
	}
}

func fileDigest(t *testing.T, path string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), int64(len(b))
}

// TestOutputJSON builds, verifies, lists builders and publishes with --output json and checks every field
// against the build itself: the files on disk, the signed provenance and the registry.
func TestOutputJSON(t *testing.T) {
	p := newProject(t, simpleTask)
	p.write()
	r := ssf(t, p.tmp, "build", "-f", p.pipeline, "--source", p.src, "--out", p.out, "--output", "json")
	if r.code != 0 {
		t.Fatalf("build --output json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.assertClean()
	if r.stderr == "" {
		t.Errorf("the build's log is not on stderr:\n%s", r.stderr)
	}
	var b buildDoc
	decodeOne(t, r.stdout, &b)

	st := p.statement()
	rd := st["predicate"].(map[string]any)["runDetails"].(map[string]any)
	if want := rd["metadata"].(map[string]any)["invocationId"]; b.InvocationID != want {
		t.Errorf("invocationId = %q, want the provenance's %v", b.InvocationID, want)
	}
	if b.DurationSeconds <= 0 {
		t.Errorf("durationSeconds = %v, want > 0", b.DurationSeconds)
	}
	if b.Builder != builder {
		t.Errorf("builder = %q, want %q", b.Builder, builder)
	}
	if b.Out != p.out || b.Provenance != filepath.Join(p.out, "attestations/provenance.sigstore.json") {
		t.Errorf("out = %q, provenance = %q; want %s and its attestations/provenance.sigstore.json", b.Out, b.Provenance, p.out)
	}
	if b.Source.URI == "" || len(b.Source.Digest) == 0 {
		t.Errorf("source = %+v, want a URI and a digest", b.Source)
	}
	if b.Publish != nil {
		t.Errorf("publish = %+v without --publish", b.Publish)
	}
	subjects := map[string]string{}
	for _, s := range st["subject"].([]any) {
		m := s.(map[string]any)
		subjects[m["name"].(string)] = "sha256:" + m["digest"].(map[string]any)["sha256"].(string)
	}
	wantPaths := []string{"artifact", "bin/readme"}
	if len(b.Outputs) != len(wantPaths) || len(b.SBOMs) != len(wantPaths) {
		t.Fatalf("outputs %+v, sboms %+v: want one each for %v", b.Outputs, b.SBOMs, wantPaths)
	}
	for i, o := range b.Outputs {
		dg, size := fileDigest(t, filepath.Join(p.out, wantPaths[i]))
		if o.Path != wantPaths[i] || o.File != filepath.Join(p.out, o.Path) || o.Digest != dg || o.Size != size {
			t.Errorf("outputs[%d] = %+v, want path %s, file in out, digest %s, size %d", i, o, wantPaths[i], dg, size)
		}
		if subjects[o.Path] != o.Digest {
			t.Errorf("outputs[%d].digest %s is not the provenance's subject %s", i, o.Digest, subjects[o.Path])
		}
		s := b.SBOMs[i]
		if s.Output != o.Path {
			t.Errorf("sboms[%d].output = %q, want %q", i, s.Output, o.Path)
		}
		for _, f := range []string{s.SPDX, s.CycloneDX} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("sboms[%d] names %s: %v", i, f, err)
			}
		}
	}

	// Signed by identity, the default: who signed, as ssf verify takes it, and each task's attestation.
	if b.SignedBy != runIdentity || b.Issuer != identityIssuer {
		t.Errorf("signedBy = %q, issuer = %q; want %s and %s", b.SignedBy, b.Issuer, runIdentity, identityIssuer)
	}
	if ta := b.TaskAttestations; len(ta) != 1 || ta[0].Task != "make" || ta[0].Identity != runIdentity+"/task/make" ||
		ta[0].Bundle != filepath.Join(p.out, "attestations/make.task.sigstore.json") {
		t.Errorf("taskAttestations = %+v, want make's bundle signed by %s/task/make", ta, runIdentity)
	} else if _, err := os.Stat(ta[0].Bundle); err != nil {
		t.Errorf("taskAttestations names %s: %v", ta[0].Bundle, err)
	}

	// verify FILE
	r = ssf(t, p.tmp, append([]string{"verify", b.Outputs[0].File, "--bundle", b.Provenance, "--output", "json"}, asRun...)...)
	if r.code != 0 {
		t.Fatalf("verify --output json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var v verifyDoc
	decodeOne(t, r.stdout, &v)
	if !v.Verified || v.File != b.Outputs[0].File || v.Subject != "artifact" || v.Digest != b.Outputs[0].Digest ||
		v.Invocation != b.InvocationID || v.Pipeline != "test" || v.BuilderID == "" || v.Ref != "" {
		t.Errorf("verify = %+v, want the build's artifact", v)
	}
	if len(v.Checks) == 0 || len(v.Unchecked) == 0 {
		t.Errorf("verify lists checks %q and unchecked %q, want both (no expectation was given)", v.Checks, v.Unchecked)
	}

	// A failed verification: exit 1, and stdout is the error object.
	other := filepath.Join(p.dir, "other")
	os.WriteFile(other, []byte("not built\n"), 0o644)
	r = ssf(t, p.tmp, append([]string{"verify", other, "--bundle", b.Provenance, "--output", "json"}, asRun...)...)
	var e errorDoc
	decodeOne(t, r.stdout, &e)
	if r.code != 1 || e.ExitCode != 1 || e.Error == "" || !strings.Contains(r.stderr, "ssf: error: "+e.Error) {
		t.Errorf("failed verify: exit %d, stdout %+v; want exit 1 and the stderr error\n%s", r.code, e, r.stderr)
	}

	// builder list
	r = ssf(t, p.tmp, "builder", "list", "--output", "json")
	var list struct {
		Builders []struct {
			Name        string   `json:"name"`
			FormerNames []string `json:"formerNames"`
			Reference   string   `json:"reference"`
			Digest      string   `json:"digest"`
			Size        int64    `json:"size"`
		} `json:"builders"`
	}
	decodeOne(t, r.stdout, &list)
	found := false
	for _, bl := range list.Builders {
		if bl.Reference == builder {
			found = bl.Name == "busybox" && "busybox@"+bl.Digest == builder && bl.Size > 0
		}
	}
	if r.code != 0 || !found {
		t.Errorf("builder list --output json: exit %d, %+v; want busybox as %s", r.code, list, builder)
	}

	// publish, then verify the reference and the tag
	reg := startRegistry(t)
	r = ssfEnv(t, p.tmp, reg.env(true), "publish", p.out, "--to", reg.host+"/json/app:v1", "--output", "json")
	if r.code != 0 {
		t.Fatalf("publish --output json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var pd publishDoc
	decodeOne(t, r.stdout, &pd)
	if !strings.HasPrefix(pd.Artifact, reg.host+"/json/app@sha256:") || len(pd.Images) != 0 || len(pd.Referrers) < 4 ||
		len(pd.Tags) != 1 || pd.Tags[0].Tag != reg.host+"/json/app:v1" || pd.Tags[0].Ref != pd.Artifact {
		t.Errorf("publish = %+v, want the artifact tagged v1 with the provenance, SBOM and task referrers", pd)
	}
	if pd.Images == nil {
		t.Errorf("images is null, want {}")
	}
	for _, ref := range []string{pd.Artifact, reg.host + "/json/app:v1"} {
		r = ssfEnv(t, p.tmp, reg.env(true), append([]string{"verify", ref, "--output", "json"}, asRun...)...)
		if r.code != 0 {
			t.Fatalf("verify %s --output json: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
		}
		var rv verifyDoc
		decodeOne(t, r.stdout, &rv)
		wantTag := ""
		if !strings.Contains(ref, "@") {
			wantTag = ref
		}
		if !rv.Verified || rv.Ref != pd.Artifact || rv.Tag != wantTag || rv.File != "" || rv.Invocation != b.InvocationID ||
			"sha256:"+strings.SplitN(pd.Artifact, "@sha256:", 2)[1] != rv.Digest {
			t.Errorf("verify %s = %+v, want the published artifact", ref, rv)
		}
	}
}

// TestOutputJSONBuildFailure: a failed build under --output json exits 1 as ever, with the error object alone
// on stdout, and --publish adds the push to the build's object.
func TestOutputJSONBuildFailure(t *testing.T) {
	p := newProject(t, `
    - name: make
      steps:
        - name: fail
          run: echo compiling >&2; exit 3
      outputs: [artifact]
`)
	r := p.build("--output", "json")
	var e errorDoc
	decodeOne(t, r.stdout, &e)
	if r.code != 1 || e.ExitCode != 1 || !strings.Contains(e.Error, `"make"`) || !strings.Contains(r.stderr, "compiling") {
		t.Errorf("failed build: exit %d, stdout %+v; want exit 1 naming the task, the step's log on stderr\n%s", r.code, e, r.stderr)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("a failed build left %s", p.out)
	}
	p.assertClean()

	ok := newProject(t, simpleTask)
	reg := startRegistry(t)
	ok.write()
	args := []string{"build", "-f", ok.pipeline, "--source", ok.src, "--out", ok.out, "--publish", reg.host + "/json/built:v2", "--output", "json"}
	r = ssfEnv(t, ok.tmp, reg.env(true), args...)
	if r.code != 0 {
		t.Fatalf("build --publish --output json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var b buildDoc
	decodeOne(t, r.stdout, &b)
	if b.Publish == nil || !strings.HasPrefix(b.Publish.Artifact, reg.host+"/json/built@sha256:") || len(b.Outputs) != 2 {
		t.Errorf("build --publish = %+v, want the outputs and the push", b)
	}
	if bytes.Contains([]byte(r.stdout), []byte("referrer    ")) {
		t.Errorf("text output leaked into the JSON:\n%s", r.stdout)
	}
}

// TestOutputJSONPublishImage: an image output appears in publish's images map and its tags, as the text shows.
func TestOutputJSONPublishImage(t *testing.T) {
	p := newProject(t, `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/image.tar"
      outputs: [image.tar]
`)
	p.write()
	digest := p.addRandomImage("image.tar", 1024)
	reg := startRegistry(t)
	args := []string{"build", "-f", p.pipeline, "--source", p.src, "--out", p.out, "--publish", reg.host + "/team/image:v1", "--output", "json"}
	r := ssfEnv(t, p.tmp, reg.env(true), args...)
	if r.code != 0 {
		t.Fatalf("build --publish --output json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var b buildDoc
	decodeOne(t, r.stdout, &b)
	imageRef := reg.host + "/team/image@" + digest.String()
	if b.Publish == nil || b.Publish.Images["image.tar"] != imageRef || len(b.Publish.Images) != 1 {
		t.Fatalf("publish = %+v, want images {image.tar: %s}", b.Publish, imageRef)
	}
	tags := map[string]string{}
	for _, tg := range b.Publish.Tags {
		tags[tg.Tag] = tg.Ref
	}
	if tags[reg.host+"/team/image:v1"] != imageRef || tags[reg.host+"/team/image:v1.files"] != b.Publish.Artifact {
		t.Errorf("tags = %v, want v1 on the image and v1.files on the artifact %s", tags, b.Publish.Artifact)
	}
}
