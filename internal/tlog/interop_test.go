package tlog

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ssf-dev/ssf/internal/interoptest"
)

// interopTool finds an external tool: $env, then .tools/NAME in the module root, then $PATH. Without it the test
// is skipped, or fails under SSF_REQUIRE_INTEROP=1 (make test installs cosign into .tools/).
func interopTool(t *testing.T, env, name string) string { return interoptest.Tool(t, env, name) }

// trustedRootJSON is a Sigstore trusted root holding only the log, valid from start.
func trustedRootJSON(t *testing.T, l *Log, start time.Time) []byte {
	t.Helper()
	b, err := protojson.Marshal(&prototrustroot.TrustedRoot{
		MediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
		Tlogs:     []*prototrustroot.TransparencyLogInstance{l.TrustedRootEntry("https://ssf.local", start)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTrustedRootEntryShape pins the JSON shape INTEROP.md gives for a private log in a trusted root.
func TestTrustedRootEntryShape(t *testing.T) {
	l := openLog(t, t.TempDir(), newKey(t))
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	var got struct {
		Tlogs []struct {
			BaseURL       string `json:"baseUrl"`
			HashAlgorithm string `json:"hashAlgorithm"`
			PublicKey     struct {
				RawBytes   []byte `json:"rawBytes"`
				KeyDetails string `json:"keyDetails"`
				ValidFor   struct {
					Start string `json:"start"`
				} `json:"validFor"`
			} `json:"publicKey"`
			LogID struct {
				KeyID []byte `json:"keyId"`
			} `json:"logId"`
		} `json:"tlogs"`
	}
	if err := json.Unmarshal(trustedRootJSON(t, l, start), &got); err != nil {
		t.Fatal(err)
	}
	e := got.Tlogs[0]
	id := l.LogID()
	der, _ := x509.MarshalPKIXPublicKey(l.PublicKey())
	if e.BaseURL != "https://ssf.local" || e.HashAlgorithm != "SHA2_256" || e.PublicKey.KeyDetails != "PKIX_ECDSA_P256_SHA_256" ||
		e.PublicKey.ValidFor.Start != "2026-11-30T00:00:00Z" || !bytes.Equal(e.LogID.KeyID, id[:]) || !bytes.Equal(e.PublicKey.RawBytes, der) {
		t.Fatalf("trusted root entry %+v", e)
	}
}

// attestation is a DSSE-signed in-toto statement about one file, logged, as a Sigstore bundle v0.3.
type attestation struct {
	artifact []byte
	bundle   *protobundle.Bundle
	key      *ecdsa.PrivateKey
}

func newAttestation(t *testing.T, l *Log) attestation {
	t.Helper()
	artifact := []byte("the artifact\n")
	digest := sha256.Sum256(artifact)
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "artifact.txt", "digest": map[string]string{"sha256": hex.EncodeToString(digest[:])}}},
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://ssf.dev/test", "externalParameters": map[string]any{}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://ssf.dev/test"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	// Other entries first, so that the inclusion proof has hashes to tamper with.
	for i := range 5 {
		if _, err := l.Append(context.Background(), testEntry(t, k, i)); err != nil {
			t.Fatal(err)
		}
	}
	const payloadType = "application/vnd.in-toto+json"
	envJSON := signDSSE(t, k, payloadType, statement)
	entry, err := NewDSSEEntry(envJSON, pubPEM(t, k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	le, err := l.Append(context.Background(), entry)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Signatures []struct{ Sig string } `json:"signatures"`
	}
	if err := json.Unmarshal(envJSON, &env); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	b := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: ""}},
			TlogEntries: []*rekorpb.TransparencyLogEntry{le.Proto()},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: statement, PayloadType: payloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	return attestation{artifact: artifact, bundle: b, key: k}
}

// tamperings are the changes to a good bundle that every verifier must refuse.
var tamperings = []struct {
	name   string
	change func(e *rekorpb.TransparencyLogEntry)
}{
	{"inclusion proof hash", func(e *rekorpb.TransparencyLogEntry) { e.InclusionProof.Hashes[0][0] ^= 1 }},
	{"inclusion proof root", func(e *rekorpb.TransparencyLogEntry) { e.InclusionProof.RootHash[0] ^= 1 }},
	{"checkpoint root", func(e *rekorpb.TransparencyLogEntry) {
		lines := strings.SplitN(e.InclusionProof.Checkpoint.Envelope, "\n", 4)
		root, _ := base64.StdEncoding.DecodeString(lines[2])
		root[0] ^= 1
		lines[2] = base64.StdEncoding.EncodeToString(root)
		e.InclusionProof.Checkpoint.Envelope = strings.Join(lines, "\n")
	}},
	{"checkpoint signature", func(e *rekorpb.TransparencyLogEntry) {
		cp := e.InclusionProof.Checkpoint.Envelope
		i := strings.LastIndex(cp, " ")
		sig, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(cp[i+1:]))
		sig[len(sig)-1] ^= 1
		e.InclusionProof.Checkpoint.Envelope = cp[:i+1] + base64.StdEncoding.EncodeToString(sig) + "\n"
	}},
	{"SET", func(e *rekorpb.TransparencyLogEntry) {
		s := e.InclusionPromise.SignedEntryTimestamp
		s[len(s)-1] ^= 1
	}},
	{"integrated time", func(e *rekorpb.TransparencyLogEntry) { e.IntegratedTime-- }},
	{"log index", func(e *rekorpb.TransparencyLogEntry) { e.LogIndex++; e.InclusionProof.LogIndex++ }},
	{"no log entry", nil},
}

func tampered(t *testing.T, good *protobundle.Bundle, change func(*rekorpb.TransparencyLogEntry)) *protobundle.Bundle {
	t.Helper()
	b := proto.Clone(good).(*protobundle.Bundle)
	if change == nil {
		b.VerificationMaterial.TlogEntries = nil
		return b
	}
	change(b.VerificationMaterial.TlogEntries[0])
	return b
}

// sigstoreGoVerify verifies b as cosign does with --key and a trusted root holding the log: one log entry with a
// verified SET and inclusion proof, its integrated time as the signature's time.
func sigstoreGoVerify(t *testing.T, trJSON []byte, a attestation, b *protobundle.Bundle) error {
	t.Helper()
	tr, err := root.NewTrustedRootFromJSON(trJSON)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadDefaultVerifier(a.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	material := root.TrustedMaterialCollection{tr, root.NewTrustedPublicKeyMaterial(
		func(string) (root.TimeConstrainedVerifier, error) { return key, nil })}
	verifier, err := sgverify.NewVerifier(material, sgverify.WithTransparencyLog(1), sgverify.WithIntegratedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := bundle.NewBundle(b)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(a.artifact)
	_, err = verifier.Verify(sb, sgverify.NewPolicy(sgverify.WithArtifactDigest("sha256", digest[:]), sgverify.WithKey()))
	return err
}

// TestSigstoreGoVerifiesBundle: a bundle carrying the log's dsse entry verifies with sigstore-go with the log
// required (threshold 1) and integrated time as the only time source; each tampering is refused.
func TestSigstoreGoVerifiesBundle(t *testing.T) {
	start := time.Now().Add(-time.Minute)
	l := openLog(t, t.TempDir(), newKey(t))
	a := newAttestation(t, l)
	tr := trustedRootJSON(t, l, start)
	if err := sigstoreGoVerify(t, tr, a, a.bundle); err != nil {
		t.Fatalf("sigstore-go refused the good bundle: %v", err)
	}
	for _, tt := range tamperings {
		t.Run(tt.name, func(t *testing.T) {
			if err := sigstoreGoVerify(t, tr, a, tampered(t, a.bundle, tt.change)); err == nil {
				t.Fatal("sigstore-go accepted a tampered bundle")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	t.Run("log key not yet valid at integrated time", func(t *testing.T) {
		if err := sigstoreGoVerify(t, trustedRootJSON(t, l, time.Now().Add(time.Hour)), a, a.bundle); err == nil {
			t.Fatal("sigstore-go accepted an entry integrated before the log key's validity")
		}
	})
}

// TestCosignVerifiesBundle: stock cosign (v2.6.5 in .tools) verifies the bundle with the log check on, and
// refuses each tampering.
func TestCosignVerifiesBundle(t *testing.T) {
	cosign := interopTool(t, "SSF_COSIGN", "cosign")
	start := time.Now().Add(-time.Minute)
	l := openLog(t, t.TempDir(), newKey(t))
	a := newAttestation(t, l)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	artifact := write("artifact.txt", a.artifact)
	trustedRoot := write("trusted_root.json", trustedRootJSON(t, l, start))
	pub := write("k.pub", pubPEM(t, a.key.Public()))
	run := func(t *testing.T, b *protobundle.Bundle) (string, error) {
		bj, err := protojson.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		bp := write(strings.ReplaceAll(t.Name(), "/", "_")+".sigstore.json", bj)
		args := []string{"verify-blob-attestation", "--bundle", bp, "--trusted-root", trustedRoot, "--key", pub,
			"--type", "slsaprovenance1", artifact}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cosign, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // keep cosign away from any ~/.sigstore
		out, err := cmd.CombinedOutput()
		t.Logf("$ cosign %s\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	out, err := run(t, a.bundle)
	if err != nil {
		t.Fatalf("cosign refused the good bundle: %v", err)
	}
	if !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign exited 0 without saying Verified OK")
	}
	for _, tt := range tamperings {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tampered(t, a.bundle, tt.change))
			if err == nil {
				t.Fatal("cosign accepted a tampered bundle")
			} else if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("running cosign: %v", err)
			}
			// A usage error must not pass for a refusal: cosign names the log check that failed.
			if !strings.Contains(out, "log") {
				t.Fatalf("cosign failed, but not on the log check")
			}
		})
	}
}

// TestEntryMatchesRekorShape pins the exact canonical bodies (the bytes sigstore-go and cosign parsed above).
func TestEntryMatchesRekorShape(t *testing.T) {
	k := newKey(t)
	env := signDSSE(t, k, "application/vnd.in-toto+json", []byte(`{}`))
	e, err := NewDSSEEntry(env, pubPEM(t, k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(e.Body(), &body); err != nil {
		t.Fatal(err)
	}
	spec := body["spec"].(map[string]any)
	for _, f := range []string{"envelopeHash", "payloadHash", "signatures"} {
		if _, ok := spec[f]; !ok {
			t.Fatalf("dsse spec has no %s: %s", f, e.Body())
		}
	}
	if !bytes.HasPrefix(e.Body(), []byte(`{"apiVersion":"0.0.1","kind":"dsse","spec":{"envelopeHash":{"algorithm":"sha256","value":"`)) {
		t.Fatalf("dsse body %s", e.Body())
	}
	if _, err := ParseEntry(e.Body()); err != nil {
		t.Fatalf("the log cannot re-parse its own body: %v", err)
	}
}

// TestHashedRekordInterop: a blob signature bundle (message signature) carrying the log's hashedrekord entry
// verifies with sigstore-go and `cosign verify-blob`, and a tampered SET or inclusion proof is refused.
func TestHashedRekordInterop(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, t.TempDir(), newKey(t))
	k := newKey(t)
	for i := range 3 {
		if _, err := l.Append(ctx, testEntry(t, k, i)); err != nil {
			t.Fatal(err)
		}
	}
	artifact := []byte("a blob\n")
	digest := sha256.Sum256(artifact)
	sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	entry, err := NewHashedRekordEntry("sha256", digest[:], sig, pubPEM(t, k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	le, err := l.Append(ctx, entry)
	if err != nil {
		t.Fatal(err)
	}
	good := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{}},
			TlogEntries: []*rekorpb.TransparencyLogEntry{le.Proto()},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: digest[:]},
			Signature:     sig,
		}},
	}
	a := attestation{artifact: artifact, bundle: good, key: k}
	tr := trustedRootJSON(t, l, time.Now().Add(-time.Minute))
	cases := []struct {
		name   string
		change func(*rekorpb.TransparencyLogEntry)
		ok     bool
	}{
		{name: "good", change: func(*rekorpb.TransparencyLogEntry) {}, ok: true},
		{name: "SET", change: tamperings[4].change},
		{name: "inclusion proof hash", change: tamperings[0].change},
	}
	dir := t.TempDir()
	cosign := ""
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tampered(t, good, tc.change)
			if err := sigstoreGoVerify(t, tr, a, b); (err == nil) != tc.ok {
				t.Fatalf("sigstore-go: err = %v, want ok = %v", err, tc.ok)
			}
			if cosign == "" {
				cosign = interopTool(t, "SSF_COSIGN", "cosign")
			}
			files := map[string][]byte{"blob": artifact, "tr.json": tr, "k.pub": pubPEM(t, k.Public())}
			bj, err := protojson.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			files["b.sigstore.json"] = bj
			for name, data := range files {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"verify-blob", "--bundle", filepath.Join(dir, "b.sigstore.json"), "--trusted-root", filepath.Join(dir, "tr.json"),
				"--key", filepath.Join(dir, "k.pub"), filepath.Join(dir, "blob")}
			cmd := exec.CommandContext(ctx, cosign, args...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			t.Logf("$ cosign %s\n%s", strings.Join(args, " "), out)
			if (err == nil) != tc.ok {
				t.Fatalf("cosign: err = %v, want ok = %v", err, tc.ok)
			}
		})
	}
}
