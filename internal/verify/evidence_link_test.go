package verify_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/verify"
)

// TestCollectLinksThroughTheProvenance: the evidence of a published files artifact (the provenance's
// oci://artifact subject) holds the statements about the build's files and logs that the VERIFIED provenance
// names, marked LinkedBy "provenance": a task attestation whose bundle the provenance lists among its byproducts,
// an SBOM every subject of which the provenance names. A statement about a file the provenance does not name, one
// signed by another key, another provenance, and anything at all when no provenance verified, stay out; so does
// linking for a file or an image (another output's statement is not about it).
func TestCollectLinksThroughTheProvenance(t *testing.T) {
	key, other := newKey(t), newKey(t)
	file, log, stranger := []byte("a\n"), []byte("task log\n"), []byte("another build's file")
	fileD, logD, strangerD := digest.FromBytes(file), digest.FromBytes(log), digest.FromBytes(stranger)
	manifest := digest.FromBytes([]byte(`{"the":"files artifact manifest"}`))
	image := digest.FromBytes([]byte(`{"an":"image manifest"}`))

	taskSt := []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":%q}},{"name":"internal/x","digest":{"sha256":%q}},{"name":"attestations/logs/t.log","digest":{"sha256":%q}}],"predicateType":"https://ssf.dev/attestations/task/v1","predicate":{"task":"t"}}`,
		fileD.Encoded(), digest.FromBytes([]byte("internal")).Encoded(), logD.Encoded()))
	task := signStatement(t, key, taskSt)
	b := testBuild()
	b.Subjects = []provenance.Subject{{Name: oci.ArtifactSubject, Digest: manifest}, {Name: oci.ImageSubjectPrefix + "a", Digest: image}, {Name: "a", Digest: fileD}}
	b.Byproducts = []provenance.ResourceDescriptor{
		{Name: "attestations/logs/t.log", Digest: provenance.DigestSet(logD)},
		{Name: "attestations/t.task.sigstore.json", MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", Digest: provenance.DigestSet(digest.FromBytes(task))},
	}
	prov := signBuild(t, key, b)
	sbom := signStatement(t, key, sbomStatement(sbomType, fileD))
	strangerSBOM := signStatement(t, key, sbomStatement(sbomType, fileD, strangerD))
	forged := signStatement(t, other, sbomStatement(sbomType, fileD))
	otherTask := signStatement(t, key, []byte(strings.Replace(string(taskSt), `"task":"t"`, `"task":"u"`, 1))) // not listed, and names an internal file
	otherProv := signBuild(t, key, func() provenance.Build { o := testBuild(file); o.InvocationID = "run-2"; return o }())
	bundles := []verify.EvidenceBundle{{"prov", prov}, {"task", task}, {"sbom", sbom}, {"stranger", strangerSBOM}, {"forged", forged}, {"othertask", otherTask}, {"otherprov", otherProv}}
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}
	ctx := context.Background()

	ev, err := verify.Collect(ctx, "registry.example/app@"+string(manifest), manifest, bundles, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance == nil {
		t.Fatalf("provenance: %v", ev.ProvenanceErr)
	}
	var got []string
	for _, s := range ev.Statements {
		got = append(got, s.Source+"/"+s.LinkedBy)
	}
	if want := "prov/ task/provenance sbom/provenance"; strings.Join(got, " ") != want {
		t.Errorf("statements %v, want %s", got, want)
	}
	skipped := map[string]string{}
	for _, s := range ev.Skipped {
		skipped[s.Source] = s.Reason.Error()
	}
	for src, want := range map[string]string{
		"stranger":  "the verified provenance does not name it",
		"forged":    "linked by the provenance, but",
		"othertask": "the verified provenance does not name it",
		"otherprov": "a SLSA provenance of other files is not linked",
	} {
		if !strings.Contains(skipped[src], want) {
			t.Errorf("%s: skipped for %q, want %q", src, skipped[src], want)
		}
	}

	// The file itself and the image: only what names them.
	for _, d := range []digest.Digest{fileD, image} {
		ev, err := verify.Collect(ctx, "x", d, bundles, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ev.Statements {
			if s.LinkedBy != "" {
				t.Errorf("%s: %s linked (%s)", d, s.Source, s.LinkedBy)
			}
		}
	}
	// No verified provenance (another key is trusted for it): nothing is linked.
	ev, err = verify.Collect(ctx, "x", manifest, append([]verify.EvidenceBundle{{"p2", signBuild(t, other, b)}}, bundles[1:]...), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance != nil || len(ev.Statements) != 0 {
		t.Errorf("without a verified provenance: %d statements, provenance %v", len(ev.Statements), ev.Provenance)
	}
}

// TestCollectLinksNoTaskAttestationOfAnotherBuild: a task attestation says a task of one build ran. Another build
// whose outputs are byte-identical to a task's outputs and log (its pipeline copies them from its source: no task
// of it ran the tests) names every subject of that attestation; the attestation, signed by the trusted material
// for another build, must not be linked into its evidence. Its own task attestations, listed by bundle, are.
func TestCollectLinksNoTaskAttestationOfAnotherBuild(t *testing.T) {
	key := newKey(t)
	report, log := []byte("PASS\n"), []byte("ok  all tests\n")
	reportD, logD := digest.FromBytes(report), digest.FromBytes(log)
	manifest := digest.FromBytes([]byte(`{"the":"files artifact manifest"}`))
	testsSt := []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"report","digest":{"sha256":%q}},{"name":"attestations/logs/test.log","digest":{"sha256":%q}}],"predicateType":"https://ssf.dev/attestations/task/v1","predicate":{"pipeline":"app","task":"test","invocationId":"the-other-build"}}`,
		reportD.Encoded(), logD.Encoded()))
	othersTests := signStatement(t, key, testsSt)
	b := testBuild()
	b.Subjects = []provenance.Subject{{Name: oci.ArtifactSubject, Digest: manifest}, {Name: "report", Digest: reportD}, {Name: "copied.log", Digest: logD}}
	b.Byproducts = []provenance.ResourceDescriptor{{Name: "attestations/logs/copy.log", Digest: provenance.DigestSet(digest.FromBytes([]byte("copying\n")))}}
	prov := signBuild(t, key, b)
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}

	ev, err := verify.Collect(context.Background(), "registry.example/app@"+string(manifest), manifest,
		[]verify.EvidenceBundle{{"prov", prov}, {"other-build-tests", othersTests}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance == nil {
		t.Fatalf("provenance: %v", ev.ProvenanceErr)
	}
	for _, s := range ev.Statements {
		if s.Source == "other-build-tests" {
			t.Fatalf("another build's task attestation is in the evidence (linkedBy %q)", s.LinkedBy)
		}
	}
	if len(ev.Skipped) != 1 || !strings.Contains(ev.Skipped[0].Reason.Error(), "linked only when the verified provenance lists its bundle") {
		t.Errorf("skipped %v, want other-build-tests skipped as another build's task attestation", ev.Skipped)
	}
}

// TestCollectLinksOnlyByproductsRecordedAsBundles: a byproduct links a bundle by its sha256, whatever the bundle
// is about, only when the provenance records it as a bundle. A task log is what the task's steps printed: were its
// bytes those of a bundle signed by the trusted material about other files (a step that prints one), that bundle
// must not be linked through it.
func TestCollectLinksOnlyByproductsRecordedAsBundles(t *testing.T) {
	key := newKey(t)
	elsewhere := digest.FromBytes([]byte("a file of another build"))
	manifest := digest.FromBytes([]byte(`{"the":"files artifact manifest"}`))
	stranger := signStatement(t, key, sbomStatement(sbomType, elsewhere))
	b := testBuild()
	b.Subjects = []provenance.Subject{{Name: oci.ArtifactSubject, Digest: manifest}}
	b.Byproducts = []provenance.ResourceDescriptor{{Name: "attestations/logs/t.log", MediaType: "text/plain; charset=utf-8", Digest: provenance.DigestSet(digest.FromBytes(stranger))}}
	opts := verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)}
	ev, err := verify.Collect(context.Background(), "x", manifest, []verify.EvidenceBundle{{"prov", signBuild(t, key, b)}, {"printed", stranger}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance == nil {
		t.Fatalf("provenance: %v", ev.ProvenanceErr)
	}
	if len(ev.Statements) != 1 {
		t.Fatalf("%d statements, want the provenance alone: %+v", len(ev.Statements), ev.Statements[len(ev.Statements)-1].Subject)
	}
	// Recorded as a bundle, the same bytes are linked.
	b.Byproducts[0].MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	if ev, err = verify.Collect(context.Background(), "x", manifest, []verify.EvidenceBundle{{"prov", signBuild(t, key, b)}, {"printed", stranger}}, opts); err != nil {
		t.Fatal(err)
	}
	if len(ev.Statements) != 2 || ev.Statements[1].LinkedBy != verify.LinkedByProvenance {
		t.Fatalf("a bundle byproduct: %d statements, want it linked", len(ev.Statements))
	}
}

// TestCollectLinksNothingVacuous: "every subject is named by the provenance" never holds vacuously or by another
// digest algorithm (a statement with no subject at all the signing library refuses, and so does subjectDigests): one
// whose subjects have no sha256 (a sha512 equal to nothing the
// provenance names), and one naming the provenance's file twice beside an unnamed sha512 subject stay out.
func TestCollectLinksNothingVacuous(t *testing.T) {
	key := newKey(t)
	file := digest.FromBytes([]byte("a\n"))
	manifest := digest.FromBytes([]byte(`{"the":"files artifact manifest"}`))
	b := testBuild()
	b.Subjects = []provenance.Subject{{Name: oci.ArtifactSubject, Digest: manifest}, {Name: "a", Digest: file}}
	stmt := func(subjects string) []byte {
		return signStatement(t, key, []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[`+subjects+`],"predicateType":"https://slsa.dev/verification_summary/v1","predicate":{"verifiedLevels":["SLSA_BUILD_LEVEL_3"]}}`))
	}
	sha512 := `{"name":"a","digest":{"sha512":"` + strings.Repeat("ab", 64) + `"}}`
	named := fmt.Sprintf(`{"name":"a","digest":{"sha256":%q}}`, file.Encoded())
	bundles := []verify.EvidenceBundle{
		{"prov", signBuild(t, key, b)},
		{"sha512", stmt(sha512)},
		{"mixed", stmt(named + "," + named + "," + sha512)},
	}
	ev, err := verify.Collect(context.Background(), "x", manifest, bundles, verify.Options{Trusted: verify.KeyMaterial(&key.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Provenance == nil {
		t.Fatalf("provenance: %v", ev.ProvenanceErr)
	}
	for _, s := range ev.Statements[1:] {
		t.Errorf("%s linked (%v)", s.Source, s.Subject)
	}
	if len(ev.Skipped) != 2 {
		t.Errorf("skipped %v, want sha512 and mixed", ev.Skipped)
	}
}
