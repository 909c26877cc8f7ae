package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	sigsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

const (
	builderID = "https://ssf.dev/builders/local@v1"
	gitCommit = "0123456789abcdef0123456789abcdef01234567"
	hexOther  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hexDigest is the digest whose hex a test case names, as given: case is not changed.
func hexDigest(h string) digest.Digest { return digest.Digest("sha256:" + h) }

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testBuild is a build whose outputs are the given artifacts, named out/0, out/1, ...
func testBuild(artifacts ...[]byte) provenance.Build {
	b := provenance.Build{
		BuilderID:      builderID,
		BuilderVersion: map[string]string{"ssf": "v0.1.0"},
		InvocationID:   "run-0001",
		StartedOn:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		FinishedOn:     time.Date(2026, 1, 2, 3, 5, 6, 0, time.UTC),
		PipelineName:   "hello",
		PipelinePath:   "ssf.yaml",
		PipelineDigest: digest.FromBytes([]byte("pipeline")),
		Params:         map[string]string{"GOOS": "linux"},
		SourceURI:      "git+https://example.com/hello",
		Dependencies: []provenance.ResourceDescriptor{
			{Name: provenance.SourceDependencyName, URI: "git+https://example.com/hello",
				Digest: provenance.Digest{"gitCommit": gitCommit, "sha256": hexOther}},
			{Name: "builder", URI: "registry.example/go", Digest: provenance.Digest{"sha256": sha256Hex([]byte("img"))}},
		},
	}
	for i, a := range artifacts {
		b.Subjects = append(b.Subjects, provenance.Subject{Name: "out/" + string(rune('0'+i)), Digest: digest.FromBytes(a)})
	}
	return b
}

func signStatement(t testing.TB, key *ecdsa.PrivateKey, st []byte) []byte {
	t.Helper()
	bundle, err := sign.NewSigner(key).Statement(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return bundle
}

func signBuild(t testing.TB, key *ecdsa.PrivateKey, b provenance.Build) []byte {
	t.Helper()
	st, err := provenance.Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	return signStatement(t, key, st)
}

// editBundle changes the bundle's JSON: f gets the decoded dsseEnvelope.
func editBundle(t testing.TB, bundle []byte, f func(env map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(bundle, &m); err != nil {
		t.Fatal(err)
	}
	f(m["dsseEnvelope"].(map[string]any))
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flipSignatureByte changes one byte in the middle of the DSSE signature.
func flipSignatureByte(t testing.TB, bundle []byte) []byte {
	return editBundle(t, bundle, func(env map[string]any) {
		sig := env["signatures"].([]any)[0].(map[string]any)
		raw, err := base64.StdEncoding.DecodeString(sig["sig"].(string))
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)/2] ^= 0x01
		sig["sig"] = base64.StdEncoding.EncodeToString(raw)
	})
}

// replacePayload swaps the signed payload for another, keeping the signature.
func replacePayload(t testing.TB, bundle, payload []byte) []byte {
	return editBundle(t, bundle, func(env map[string]any) {
		env["payload"] = base64.StdEncoding.EncodeToString(payload)
	})
}

// signDSSE signs any payload with any payloadType through sigstore-go with ssf's Signer: a validly signed bundle
// that is not necessarily ssf provenance.
func signDSSE(t testing.TB, key *ecdsa.PrivateKey, payloadType string, payload []byte) []byte {
	t.Helper()
	b, err := sigsign.Bundle(&sigsign.DSSEData{Data: payload, PayloadType: payloadType}, sign.NewSigner(key), sigsign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestArtifact(t *testing.T) {
	key := newKey(t)
	otherKey := newKey(t)
	artifact := []byte("the artifact")
	second := []byte("another output of the same build")
	digest := sha256Hex(artifact)
	good := signBuild(t, key, testBuild(artifact, second))

	statement := func(b provenance.Build) []byte {
		st, err := provenance.Statement(b)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	otherBuilder := testBuild(artifact)
	otherBuilder.BuilderID = "https://evil.example/builder"
	otherBuildType := strings.Replace(string(statement(testBuild(artifact))), provenance.BuildType, "https://example.com/other/v1", 1)
	otherPredicate := strings.Replace(string(statement(testBuild(artifact))), provenance.PredicateType, "https://slsa.dev/provenance/v0.2", 1)
	noSource := testBuild(artifact)
	noSource.Dependencies = noSource.Dependencies[1:]
	twoSources := testBuild(artifact)
	twoSources.Dependencies = append(twoSources.Dependencies, twoSources.Dependencies[0])

	// A message signature over the artifact itself, made with the right key: sigstore-go accepts it for this
	// digest, but it says nothing about how the artifact was built.
	msgSig, err := sigsign.Bundle(&sigsign.PlainData{Data: artifact}, sign.NewSigner(key), sigsign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgSigJSON, err := protojson.Marshal(msgSig)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		digest  string
		bundle  []byte
		opts    verify.Options
		wantErr string // "" means verification must pass
		notVerr bool   // the error is about the arguments, not a failed verification
	}{
		{name: "round trip", digest: digest, bundle: good, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}},
		{name: "second subject", digest: sha256Hex(second), bundle: good, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}},
		{name: "upper-case digest", digest: strings.ToUpper(digest), bundle: good, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)},
			wantErr: "want sha256:<64 lower-case hex digits>", notVerr: true},
		{name: "all expectations", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: builderID, SourceDigest: "gitCommit:" + gitCommit}},
		{name: "source digest sha256", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: "sha256:" + hexOther}},
		{name: "source digest bare", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: gitCommit}},
		{name: "source digest upper-case", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: "gitCommit:" + strings.ToUpper(gitCommit)}},

		{name: "pipeline, builder image and params", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), PipelineDigest: "sha256:" + sha256Hex([]byte("pipeline")),
			BuilderDigest: "sha256:" + sha256Hex([]byte("img")), Params: map[string]string{"GOOS": "linux"}}},
		{name: "pipeline digest mismatch", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), PipelineDigest: "sha256:" + sha256Hex([]byte("other pipeline"))},
			wantErr: "pipeline digest is sha256:" + sha256Hex([]byte("pipeline")) + ", want"},
		{name: "builder image mismatch", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), BuilderDigest: "sha256:" + hexOther},
			wantErr: "builder sha256 digest is"},
		{name: "param value mismatch", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), Params: map[string]string{"GOOS": "darwin"}},
			wantErr: `param "GOOS" is "linux", want "darwin"`},
		{name: "param not expected", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), Params: map[string]string{}},
			wantErr: `param "GOOS"="linux" was set by the build but not expected`},
		{name: "malformed pipeline digest", digest: digest, bundle: good, opts: verify.Options{
			Trusted: verify.KeyMaterial(&key.PublicKey), PipelineDigest: sha256Hex([]byte("pipeline"))},
			wantErr: "want sha256:<64 hex digits>", notVerr: true},

		{name: "wrong key", digest: digest, bundle: good, opts: verify.Options{Trusted: verify.KeyMaterial(&otherKey.PublicKey)},
			wantErr: "the bundle is not signed by this key (sigstore-go rejected it: "},
		{name: "tampered payload", digest: digest, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)},
			bundle:  replacePayload(t, good, statement(otherBuilder)),
			wantErr: "sigstore-go rejected"},
		{name: "tampered signature", digest: digest, bundle: flipSignatureByte(t, good),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "sigstore-go rejected"},
		{name: "signature removed", digest: digest, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)},
			bundle:  editBundle(t, good, func(env map[string]any) { env["signatures"] = []any{} }),
			wantErr: "sigstore-go rejected"},
		{name: "signature duplicated", digest: digest, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)},
			bundle: editBundle(t, good, func(env map[string]any) {
				sigs := env["signatures"].([]any)
				env["signatures"] = append(sigs, sigs[0])
			}),
			wantErr: "sigstore-go rejected"},
		{name: "payloadType changed", digest: digest, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)},
			bundle:  editBundle(t, good, func(env map[string]any) { env["payloadType"] = "application/json" }),
			wantErr: "sigstore-go rejected"},
		{name: "artifact not a subject", digest: sha256Hex([]byte("something else")), bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "is not a subject of the bundle"},
		{name: "wrong builder id", digest: digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: "https://ssf.dev/builders/other"}, wantErr: "builder id is"},
		{name: "signed by the key, other builder", digest: digest, bundle: signBuild(t, key, otherBuilder),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: builderID}, wantErr: "builder id is"},
		{name: "source digest mismatch", digest: digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: "gitCommit:" + strings.Repeat("f", 40)}, wantErr: "source gitCommit digest is"},
		{name: "source digest bare mismatch", digest: digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: strings.Repeat("f", 40)}, wantErr: "none of the source"},
		{name: "source digest other algorithm", digest: digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: "sha512:" + gitCommit}, wantErr: "no sha512 digest"},
		{name: "source digest is another dependency's", digest: digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: "sha256:" + sha256Hex([]byte("img"))}, wantErr: "source sha256 digest is"},
		{name: "no source dependency", digest: digest, bundle: signBuild(t, key, noSource),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: gitCommit}, wantErr: "no resolvedDependency"},
		{name: "two source dependencies", digest: digest, bundle: signBuild(t, key, twoSources),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: gitCommit}, wantErr: "more than one"},
		{name: "other build type", digest: digest, bundle: signStatement(t, key, []byte(otherBuildType)),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "buildType"},
		{name: "other predicate type", digest: digest, bundle: signStatement(t, key, []byte(otherPredicate)),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "predicateType"},
		{name: "signed non-in-toto payload", digest: digest,
			bundle: signDSSE(t, key, "application/json", statement(testBuild(artifact))),
			opts:   verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "sigstore-go rejected"},
		{name: "message signature over the artifact", digest: digest, bundle: msgSigJSON,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "not a DSSE envelope"},
		{name: "garbage bundle", digest: digest, bundle: []byte("not json"),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "decoding Sigstore bundle"},
		{name: "empty bundle", digest: digest, bundle: []byte("{}"),
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "decoding Sigstore bundle"},
		{name: "bundle v0.4", digest: digest, opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)},
			bundle:  []byte(strings.Replace(string(good), "bundle.v0.3+json", "bundle.v0.4+json", 1)),
			wantErr: "decoding Sigstore bundle"},

		{name: "no key", digest: digest, bundle: good, wantErr: "no public key", notVerr: true},
		{name: "typed nil key", digest: digest, bundle: good, opts: verify.Options{Trusted: verify.KeyMaterial((*ecdsa.PublicKey)(nil))},
			wantErr: "no public key", notVerr: true},
		{name: "unsupported key", digest: digest, bundle: good, opts: verify.Options{Trusted: verify.KeyMaterial("not a key")},
			wantErr: "unusable public key", notVerr: true},
		{name: "bad artifact digest", digest: "sha256:" + digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}, wantErr: "want sha256:<64 lower-case hex digits>", notVerr: true},
		{name: "malformed source digest", digest: digest, bundle: good,
			opts: verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), SourceDigest: ":abc"}, wantErr: "ALG:VALUE", notVerr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := verify.Artifact(context.Background(), hexDigest(tt.digest), tt.bundle, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("verification failed: %v", err)
				}
				if res.Subject.Digest != hexDigest(tt.digest) {
					t.Errorf("result subject %+v, want sha256 %s", res.Subject, tt.digest)
				}
				if res.Provenance == nil || res.Provenance.BuilderID != builderID {
					t.Errorf("result provenance %+v", res.Provenance)
				}
				checkChecks(t, res.Checks, tt.opts)
				return
			}
			if err == nil {
				t.Fatalf("verification passed, want an error mentioning %q; checks: %q", tt.wantErr, res.Checks)
			}
			t.Logf("rejected: %v", err)
			if res != nil {
				t.Errorf("a failed verification returned a result: %+v", res)
			}
			if got := errors.Is(err, verify.ErrVerification); got == tt.notVerr {
				t.Errorf("errors.Is(err, ErrVerification) = %v for %v", got, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// checkChecks makes sure an unset expectation is reported as not checked, and a set one as checked.
func checkChecks(t *testing.T, checks []string, opts verify.Options) {
	t.Helper()
	all := strings.Join(checks, "\n")
	for _, want := range []string{"signature verified", "is subject", "payloadType", "buildType", "transparency log NOT checked"} {
		if !strings.Contains(all, want) {
			t.Errorf("checks do not mention %q:\n%s", want, all)
		}
	}
	for _, e := range []struct {
		name string
		set  bool
	}{
		{"builder id", opts.BuilderID != ""}, {"builder image", opts.BuilderDigest != ""},
		{"pipeline digest", opts.PipelineDigest != ""}, {"params", opts.Params != nil},
		{"source digest", opts.SourceDigest != ""},
	} {
		if got := strings.Contains(all, e.name+" NOT checked"); got == e.set {
			t.Errorf("%s expectation set %v but checks say:\n%s", e.name, e.set, all)
		}
	}
}

// Every expectation left unset is listed in Result.Unchecked, and none that was set.
func TestUncheckedExpectationsAreReported(t *testing.T) {
	key := newKey(t)
	artifact := []byte("artifact")
	good := signBuild(t, key, testBuild(artifact))
	res, err := verify.Artifact(context.Background(), digest.FromBytes(artifact), good, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`builder id (the statement says "` + builderID + `")`,
		"builder image (the statement says sha256:" + sha256Hex([]byte("img")) + ")",
		`pipeline digest (the statement says "hello" sha256:` + sha256Hex([]byte("pipeline")) + ")",
		"params (the statement has 1)",
		"source digest (the statement says gitCommit:" + gitCommit + ", sha256:" + hexOther + ")",
	}
	if strings.Join(res.Unchecked, "\n") != strings.Join(want, "\n") {
		t.Errorf("unchecked:\n%s\nwant:\n%s", strings.Join(res.Unchecked, "\n"), strings.Join(want, "\n"))
	}
	res, err = verify.Artifact(context.Background(), digest.FromBytes(artifact), good, verify.Options{
		Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: builderID, BuilderDigest: "sha256:" + sha256Hex([]byte("img")),
		PipelineDigest: "sha256:" + sha256Hex([]byte("pipeline")), Params: map[string]string{"GOOS": "linux"}, SourceDigest: gitCommit,
	})
	if err != nil || len(res.Unchecked) != 0 {
		t.Errorf("every expectation set: unchecked %q, err %v", res.Unchecked, err)
	}
}

func TestFile(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	artifact := []byte("binary contents")
	path := filepath.Join(dir, "app")
	if err := os.WriteFile(path, artifact, 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("different contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	bundle := signBuild(t, key, testBuild(artifact))
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: builderID}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		path    string
		wantErr string
		verr    bool
	}{
		{name: "the artifact", ctx: context.Background(), path: path},
		{name: "another file", ctx: context.Background(), path: other, wantErr: "is not a subject of the bundle", verr: true},
		{name: "symlink to the artifact", ctx: context.Background(), path: link, wantErr: "not a regular file"},
		{name: "directory", ctx: context.Background(), path: dir, wantErr: "not a regular file"},
		{name: "missing", ctx: context.Background(), path: filepath.Join(dir, "none"), wantErr: "no such file"},
		{name: "canceled", ctx: canceled, path: path, wantErr: "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := verify.File(tt.ctx, tt.path, bundle, opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res.Subject.Name != "out/0" {
					t.Errorf("subject = %+v", res.Subject)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
			if errors.Is(err, verify.ErrVerification) != tt.verr {
				t.Errorf("errors.Is(err, ErrVerification) = %v, want %v", !tt.verr, tt.verr)
			}
		})
	}
}

// TestPublicKeyFromPEM: the key a user hands to ssf verify as a file works the same as the in-memory one.
func TestPublicKeyFromPEM(t *testing.T) {
	key := newKey(t)
	artifact := []byte("x")
	pemBytes, err := sign.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.ParsePublicKeyPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.Artifact(context.Background(), digest.FromBytes(artifact), signBuild(t, key, testBuild(artifact)),
		verify.Options{Trusted: verify.KeyMaterial(pub)}); err != nil {
		t.Fatal(err)
	}
}

func FuzzArtifact(f *testing.F) {
	key := newKey(f)
	artifact := []byte("fuzz artifact")
	good := signBuild(f, key, testBuild(artifact))
	f.Add(good)
	f.Add(flipSignatureByte(f, good))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"}},"dsseEnvelope":{}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":""},"signature":""}}`))
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey), BuilderID: builderID, SourceDigest: "gitCommit:" + gitCommit}
	digest := sha256Hex(artifact)
	f.Fuzz(func(t *testing.T, bundle []byte) {
		res, err := verify.Artifact(context.Background(), hexDigest(digest), bundle, opts)
		if err != nil {
			if !errors.Is(err, verify.ErrVerification) {
				t.Fatalf("a bad bundle gave an error that is not ErrVerification: %v", err)
			}
			return
		}
		// Whatever was accepted must really be about this artifact.
		if res.Subject.Digest != hexDigest(digest) {
			t.Fatalf("accepted a bundle whose subject is %+v", res.Subject)
		}
	})
}

// Trusted material with a transparency log is refused unless it comes with the identity that must have signed
// (verify.CertificateMaterial, which also requires log entries): never half-used, so a bundle without an entry
// cannot pass where the caller expected one.
func TestTrustedMaterialWithLogIsRefused(t *testing.T) {
	key := newKey(t)
	artifact := []byte("artifact")
	good := signBuild(t, key, testBuild(artifact))
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, nil, nil, nil, map[string]*root.TransparencyLog{
		"log": {BaseURL: "https://log.example", ID: []byte("log"), HashFunc: crypto.SHA256, PublicKey: &key.PublicKey, SignatureHashFunc: crypto.SHA256},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify.Artifact(context.Background(), digest.FromBytes(artifact), good, verify.Options{Trusted: tr})
	if err == nil || errors.Is(err, verify.ErrVerification) || !strings.Contains(err.Error(), "needs the identity") {
		t.Errorf("err = %v, want a refusal of the material", err)
	}
}

// TestNotASubjectNamesAreBounded: the refusal that names a statement's subjects quotes at most a few, and each
// shortened: a bundle can carry a subject name of megabytes (read before anything is verified under certificate
// material), which must not be printed whole to the terminal.
func TestNotASubjectNamesAreBounded(t *testing.T) {
	key := newKey(t)
	long := strings.Repeat("x", 1<<20)
	st := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"` + long + `","digest":{"sha256":"` +
		strings.Repeat("0", 64) + `"}}],"predicateType":"` + provenance.PredicateType + `","predicate":{}}`
	bundle := signStatement(t, key, []byte(st))
	_, err := verify.Artifact(context.Background(), digest.FromBytes([]byte("the artifact")), bundle,
		verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	if err == nil || !strings.Contains(err.Error(), "is not a subject of the bundle") {
		t.Fatalf("err = %.300v; want the artifact refused as not a subject", err)
	}
	if len(err.Error()) > 4096 {
		t.Errorf("the refusal is %d bytes long; want a long subject name shortened", len(err.Error()))
	}
}
