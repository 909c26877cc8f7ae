package trust

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
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
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sigsign "github.com/sigstore/sigstore-go/pkg/sign"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ssf-dev/ssf/internal/ca"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/interoptest"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

const (
	testIdentity = "spiffe://ssf.local/pipeline/hello"
	testIssuer   = "https://ssf.local/issuer"
)

// fixture is a fresh factory trust in a temporary home, its transparency log, and a subject file.
type fixture struct {
	layout   home.Layout
	factory  *Factory
	log      *tlog.Log
	trJSON   []byte
	artifact []byte
}

// newFixture initialises a factory whose CA, TSA and logs started an hour ago (so that the expiry case can issue a
// certificate in the past), exports its trusted root and opens its transparency log.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	l := home.Layout{Dir: t.TempDir()}
	start := time.Now().Add(-time.Hour)
	if _, err := Init(l, Options{Host: "node-1", Now: func() time.Time { return start }}); err != nil {
		t.Fatal(err)
	}
	f, err := Load(l, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Export(l, DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := tlog.Open(context.Background(), filepath.Join(l.Dir, "log"), f.TLogKey, tlog.WithHost(DefaultTrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close(context.Background()) })
	return &fixture{layout: l, factory: f, log: lg, trJSON: tr, artifact: []byte("hello, world\n")}
}

// workload is a key made in memory and the certificate the factory issued for it.
type workload struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

// issue asks f's CA, through f's node, for a certificate for a fresh key.
func issue(t *testing.T, f *Factory, id string, issuedAt time.Time) workload {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	req, err := f.Node.Request(ca.Request{SPIFFEID: id, PublicKey: der, IssuedAt: issuedAt, Claims: ca.Claims{
		BuildSignerURI:      "https://ssf.local/pipelines/hello/ssf.yaml",
		RunInvocationURI:    "https://ssf.local/builds/0b7c5b8e",
		SourceRepositoryURI: "https://git.example/hello", SourceRepositoryDigest: strings.Repeat("ab", 20),
	}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := f.CA.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return workload{key: key, cert: cert}
}

// bundle signs an in-toto statement about the fixture's artifact as DSSE with w, appends it to the log (a dsse
// entry whose verifier is w's certificate), timestamps the signature, and assembles a Sigstore bundle v0.3.
func (fx *fixture) bundle(t *testing.T, w workload) *protobundle.Bundle {
	t.Helper()
	digest := sha256.Sum256(fx.artifact)
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "hello.txt", "digest": map[string]string{"sha256": hex.EncodeToString(digest[:])}}},
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate": map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://ssf.dev/test", "externalParameters": map[string]any{}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://ssf.local/factory"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	const payloadType = "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(statement), statement)
	h := sha256.Sum256([]byte(pae))
	sig, err := ecdsa.SignASN1(rand.Reader, w.key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	env, _ := json.Marshal(map[string]any{
		"payload": base64.StdEncoding.EncodeToString(statement), "payloadType": payloadType,
		"signatures": []any{map[string]string{"sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	entry, err := tlog.NewDSSEEntry(env, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.cert.Raw}))
	if err != nil {
		t.Fatal(err)
	}
	le, err := fx.log.Append(context.Background(), entry)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := fx.factory.TSA.Timestamp(sig)
	if err != nil {
		t.Fatal(err)
	}
	return &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: w.cert.Raw}},
			TlogEntries: []*rekorpb.TransparencyLogEntry{le.Proto()},
			TimestampVerificationData: &protobundle.TimestampVerificationData{
				Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts}},
			},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: statement, PayloadType: payloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
}

// timeSource is how a verifier dates the signature: the log's integrated time, or the TSA's signed timestamp.
type timeSource int

const (
	integrated timeSource = iota
	signed
)

func (s timeSource) String() string { return [...]string{"integrated time", "signed timestamp"}[s] }

// sigstoreGoVerify verifies b as cosign does: one log entry, one SCT, the given time source, and the identity.
func sigstoreGoVerify(t *testing.T, trJSON []byte, artifact []byte, b *protobundle.Bundle, src timeSource, identity, issuer string) error {
	t.Helper()
	tr, err := root.NewTrustedRootFromJSON(trJSON)
	if err != nil {
		t.Fatalf("sigstore-go cannot read the exported trusted root: %v", err)
	}
	opts := []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithSignedCertificateTimestamps(1)}
	if src == integrated {
		opts = append(opts, sgverify.WithIntegratedTimestamps(1))
	} else {
		opts = append(opts, sgverify.WithSignedTimestamps(1))
	}
	v, err := sgverify.NewVerifier(tr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := bundle.NewBundle(b)
	if err != nil {
		return err
	}
	id, err := sgverify.NewShortCertificateIdentity(issuer, "", identity, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Verify(sb, sgverify.NewPolicy(sgverify.WithArtifact(bytes.NewReader(artifact)), sgverify.WithCertificateIdentity(id)))
	if err != nil {
		return err
	}
	if res.Signature.Certificate.SubjectAlternativeName != identity || res.Signature.Certificate.Issuer != issuer {
		t.Fatalf("sigstore-go verified, but names %q from %q", res.Signature.Certificate.SubjectAlternativeName, res.Signature.Certificate.Issuer)
	}
	return nil
}

// cosignTool finds a cosign binary: $env, then .tools/NAME of the module; without it the test skips (or fails
// under SSF_REQUIRE_INTEROP=1).
func cosignTool(t *testing.T, env, name string) string { return interoptest.Tool(t, env, name) }

// cosignVerify runs `cosign verify-blob-attestation` with every check on (no --insecure-* flag).
func cosignVerify(t *testing.T, cosign string, trJSON, artifact []byte, b *protobundle.Bundle, src timeSource, identity, issuer string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	bj, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"hello.txt": artifact, "trusted_root.json": trJSON, "hello.sigstore.json": bj}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"verify-blob-attestation", "--bundle", filepath.Join(dir, "hello.sigstore.json"),
		"--trusted-root", filepath.Join(dir, "trusted_root.json"),
		"--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
		"--type", "slsaprovenance1"}
	if src == signed {
		args = append(args, "--use-signed-timestamps")
	}
	args = append(args, filepath.Join(dir, "hello.txt"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cosign, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir) // no ~/.sigstore TUF cache: only the given trusted root
	out, err := cmd.CombinedOutput()
	t.Logf("$ cosign %s\n%s", strings.Join(args, " "), out)
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running cosign: %v", err)
		}
		return string(out), err
	}
	if !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("cosign exited 0 without saying Verified OK")
	}
	return string(out), nil
}

// refusal is a bundle every verifier must refuse, with what cosign's message must mention.
type refusal struct {
	name, identity, issuer string
	bundle                 *protobundle.Bundle
	cosignSays             string
	onlySigned             bool // a case about the signed timestamp, which the integrated-time mode does not read
}

// refusals builds the bad cases on fx.
func (fx *fixture) refusals(t *testing.T, good *protobundle.Bundle) []refusal {
	t.Helper()
	interKey, err := sign.LoadKey(fx.layout.CAIntermediateKey())
	if err != nil {
		t.Fatal(err)
	}
	inter, err := readCert(fx.layout.CAIntermediateCert())
	if err != nil {
		t.Fatal(err)
	}

	// A certificate issued 20 minutes ago (valid 10), used now: expired at the integrated time and the TSA's.
	past := time.Now().Add(-20 * time.Minute)
	pastFactory, err := Load(fx.layout, Options{Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	expired := issue(t, pastFactory, testIdentity, past)

	// The same certificate with its SCT list removed, or with the SCT's signature changed, re-signed by the CA.
	w := issue(t, fx.factory, testIdentity, time.Time{})
	noSCT := w
	noSCT.cert = resign(t, w.cert, inter, interKey, func(e pkix.Extension) *pkix.Extension {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}) {
			return nil
		}
		return &e
	})
	badSCT := w
	badSCT.cert = resign(t, w.cert, inter, interKey, func(e pkix.Extension) *pkix.Extension {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}) {
			e.Value = bytes.Clone(e.Value)
			e.Value[len(e.Value)-1] ^= 1 // the last byte of the SCT's ECDSA signature
		}
		return &e
	})

	// Another factory (same trust domain, same names) issues a certificate; this factory's trusted root must not
	// accept it.
	other := newFixture(t)
	foreign := issue(t, other.factory, testIdentity, time.Time{})

	return []refusal{
		{name: "wrong identity", identity: "spiffe://ssf.local/pipeline/other", issuer: testIssuer, bundle: good, cosignSays: "no matching CertificateIdentity"},
		{name: "wrong issuer", identity: testIdentity, issuer: "https://other.example/issuer", bundle: good, cosignSays: "no matching CertificateIdentity"},
		{name: "certificate expired at the signature's time", identity: testIdentity, issuer: testIssuer, bundle: fx.bundle(t, expired), cosignSays: "outside certificate validity"},
		{name: "no SCT", identity: testIdentity, issuer: testIssuer, bundle: fx.bundle(t, noSCT), cosignSays: "SCT entries"},
		{name: "tampered SCT", identity: testIdentity, issuer: testIssuer, bundle: fx.bundle(t, badSCT), cosignSays: "SCT entries"},
		{name: "another factory's CA", identity: testIdentity, issuer: testIssuer, bundle: fx.bundle(t, foreign), cosignSays: "leaf certificate verification failed"},
		{name: "tampered timestamp", identity: testIdentity, issuer: testIssuer, bundle: tamperedTimestamp(t, good), cosignSays: "timestamp", onlySigned: true},
		{name: "another factory's timestamp", identity: testIdentity, issuer: testIssuer, bundle: otherTimestamp(t, good, other), cosignSays: "timestamp", onlySigned: true},
	}
}

func (r refusal) modes() []timeSource {
	if r.onlySigned {
		return []timeSource{signed}
	}
	return []timeSource{integrated, signed}
}

// tamperedTimestamp is good with one bit of its RFC 3161 timestamp's signature flipped (the last byte of the
// response is the end of the ECDSA signature in the token's SignerInfo).
func tamperedTimestamp(t *testing.T, good *protobundle.Bundle) *protobundle.Bundle {
	t.Helper()
	b := proto.Clone(good).(*protobundle.Bundle)
	ts := b.VerificationMaterial.TimestampVerificationData.Rfc3161Timestamps[0]
	ts.SignedTimestamp[len(ts.SignedTimestamp)-1] ^= 1
	return b
}

// otherTimestamp is good with its timestamp replaced by one of another factory's TSA over the same signature.
func otherTimestamp(t *testing.T, good *protobundle.Bundle, other *fixture) *protobundle.Bundle {
	t.Helper()
	b := proto.Clone(good).(*protobundle.Bundle)
	ts, err := other.factory.TSA.Timestamp(b.GetDsseEnvelope().Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	b.VerificationMaterial.TimestampVerificationData.Rfc3161Timestamps[0].SignedTimestamp = ts
	return b
}

// resign re-issues cert with its extensions passed through change (nil drops one), signed by the intermediate.
func resign(t *testing.T, cert, inter *x509.Certificate, interKey *ecdsa.PrivateKey, change func(pkix.Extension) *pkix.Extension) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: cert.SerialNumber, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}
	for _, e := range cert.Extensions {
		if c := change(e); c != nil {
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, *c)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, cert.PublicKey, interKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSigstoreGoVerifiesFactoryBundle: a bundle signed with a certificate from a fresh factory, logged in its
// transparency log and timestamped by its TSA verifies with sigstore-go against the exported trusted root — log
// entry, SCT and identity required, dated by the integrated time and, separately, by the signed timestamp — and
// every refusal case is refused in both modes.
func TestSigstoreGoVerifiesFactoryBundle(t *testing.T) {
	fx := newFixture(t)
	good := fx.bundle(t, issue(t, fx.factory, testIdentity, time.Time{}))
	for _, src := range []timeSource{integrated, signed} {
		if err := sigstoreGoVerify(t, fx.trJSON, fx.artifact, good, src, testIdentity, testIssuer); err != nil {
			t.Fatalf("sigstore-go (%s) refused the good bundle: %v", src, err)
		}
	}
	for _, r := range fx.refusals(t, good) {
		for _, src := range r.modes() {
			t.Run(r.name+"/"+src.String(), func(t *testing.T) {
				err := sigstoreGoVerify(t, fx.trJSON, fx.artifact, r.bundle, src, r.identity, r.issuer)
				if err == nil {
					t.Fatal("sigstore-go accepted it")
				}
				t.Logf("refused: %v", err)
			})
		}
	}
}

// TestCosignVerifiesFactoryBundle: stock cosign v2.6.5 (and v3.1.2 when installed) verifies the bundle with the
// exported trusted root and no insecure flag, with integrated time and with --use-signed-timestamps, and refuses
// every refusal case.
func TestCosignVerifiesFactoryBundle(t *testing.T) {
	versions := []struct{ env, name string }{{"SSF_COSIGN", "cosign"}, {"SSF_COSIGN_V3", "cosign-v3.1.2"}}
	fx := newFixture(t)
	good := fx.bundle(t, issue(t, fx.factory, testIdentity, time.Time{}))
	refusals := fx.refusals(t, good)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			cosign := cosignTool(t, v.env, v.name)
			for _, src := range []timeSource{integrated, signed} {
				if _, err := cosignVerify(t, cosign, fx.trJSON, fx.artifact, good, src, testIdentity, testIssuer); err != nil {
					t.Fatalf("cosign (%s) refused the good bundle: %v", src, err)
				}
			}
			for _, r := range refusals {
				for _, src := range r.modes() {
					t.Run(r.name+"/"+src.String(), func(t *testing.T) {
						out, err := cosignVerify(t, cosign, fx.trJSON, fx.artifact, r.bundle, src, r.identity, r.issuer)
						if err == nil {
							t.Fatal("cosign accepted it")
						}
						if !strings.Contains(out, r.cosignSays) {
							t.Fatalf("cosign refused, but its message does not mention %q", r.cosignSays)
						}
					})
				}
			}
		})
	}
}

// logTransparency appends a bundle's DSSE envelope to a tlog.Log for sigstore-go's sign.Bundle.
type logTransparency struct{ log *tlog.Log }

func (lt logTransparency) GetTransparencyLogEntry(ctx context.Context, keyOrCertPEM []byte, b *protobundle.Bundle) error {
	env := b.GetDsseEnvelope()
	sigs := []any{}
	for _, s := range env.GetSignatures() {
		sigs = append(sigs, map[string]string{"sig": base64.StdEncoding.EncodeToString(s.GetSig())})
	}
	envJSON, err := json.Marshal(map[string]any{"payload": base64.StdEncoding.EncodeToString(env.GetPayload()), "payloadType": env.GetPayloadType(), "signatures": sigs})
	if err != nil {
		return err
	}
	entry, err := tlog.NewDSSEEntry(envJSON, keyOrCertPEM)
	if err != nil {
		return err
	}
	le, err := lt.log.Append(ctx, entry)
	if err != nil {
		return err
	}
	b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, le.Proto())
	return nil
}

// TestSigstoreGoSignerWithFactoryCA: sigstore-go's own signer (sign.Bundle with an ephemeral key) gets its
// certificate from ca.Provider and its log entry from the factory log, checks the bundle against the exported
// trusted root itself, and the result (with the factory TSA's timestamp added) verifies with both cosigns.
func TestSigstoreGoSignerWithFactoryCA(t *testing.T) {
	fx := newFixture(t)
	tr, err := root.NewTrustedRootFromJSON(fx.trJSON)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := sigsign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(fx.artifact)
	statement, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "hello.txt", "digest": map[string]string{"sha256": hex.EncodeToString(digest[:])}}},
		"predicateType": "https://slsa.dev/provenance/v1",
		"predicate":     map[string]any{"buildDefinition": map[string]any{"buildType": "https://ssf.dev/test"}},
	})
	b, err := sigsign.Bundle(&sigsign.DSSEData{Data: statement, PayloadType: "application/vnd.in-toto+json"}, kp, sigsign.BundleOptions{
		CertificateProvider: &ca.Provider{CA: fx.factory.CA, Node: fx.factory.Node, SPIFFEID: testIdentity},
		TransparencyLogs:    []sigsign.Transparency{logTransparency{fx.log}},
		TrustedRoot:         tr,
		Context:             context.Background(),
	})
	if err != nil {
		t.Fatalf("sigstore-go's signer: %v", err)
	}
	ts, err := fx.factory.TSA.Timestamp(b.GetDsseEnvelope().GetSignatures()[0].GetSig())
	if err != nil {
		t.Fatal(err)
	}
	b.VerificationMaterial.TimestampVerificationData = &protobundle.TimestampVerificationData{
		Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts}},
	}
	for _, src := range []timeSource{integrated, signed} {
		if err := sigstoreGoVerify(t, fx.trJSON, fx.artifact, b, src, testIdentity, testIssuer); err != nil {
			t.Fatalf("sigstore-go (%s): %v", src, err)
		}
	}
	for _, v := range []struct{ env, name string }{{"SSF_COSIGN", "cosign"}, {"SSF_COSIGN_V3", "cosign-v3.1.2"}} {
		t.Run(v.name, func(t *testing.T) {
			cosign := cosignTool(t, v.env, v.name)
			for _, src := range []timeSource{integrated, signed} {
				if _, err := cosignVerify(t, cosign, fx.trJSON, fx.artifact, b, src, testIdentity, testIssuer); err != nil {
					t.Fatalf("cosign (%s): %v", src, err)
				}
			}
		})
	}
}
