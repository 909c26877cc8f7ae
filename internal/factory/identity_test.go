package factory

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/pipeline"
	"github.com/ssf-dev/ssf/internal/verify"
)

// newTestIdentity opens the identity signer of a fresh factory home, as an identity build's admission does.
func newTestIdentity(tb testing.TB) *identity {
	tb.Helper()
	h := Home{Dir: tb.TempDir()}
	if _, err := h.Init(); err != nil {
		tb.Fatal(err)
	}
	cfg, err := h.Config()
	if err != nil {
		tb.Fatal(err)
	}
	id, err := h.openIdentity(context.Background(), cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { id.close(context.Background()) })
	id.forBuild(&admission{req: BuildRequest{Pipeline: "/src/ssf.yaml"}, cfg: cfg, p: &pipeline.Pipeline{Name: "hello", Digest: digest.FromString("pipeline")}}, "0b7c5b8e-0000-4000-8000-000000000000", nil)
	return id
}

// taskStatement is an in-toto statement of the task predicate type about one output, of about the size a task's
// attestation has (a few KiB: the isolation record, a step script).
func taskStatement(tb testing.TB) []byte {
	tb.Helper()
	st, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "app", "digest": map[string]string{"sha256": strings.Repeat("ab", 32)}}},
		"predicateType": content.TaskPredicateType,
		"predicate":     map[string]any{"task": "build", "steps": []any{map[string]any{"run": strings.Repeat("echo step\n", 200)}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// TestIdentitySignsAsTheTask: a task's bundle carries the task's SPIFFE ID, a log entry and a timestamp, and
// verifies (through the one verifier) only under that identity.
func TestIdentitySignsAsTheTask(t *testing.T) {
	id := newTestIdentity(t)
	b, err := id.sign(context.Background(), id.taskID("build"), taskStatement(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"tlogEntries"`, `"inclusionProof"`, `"inclusionPromise"`, `"rfc3161Timestamps"`, `"certificate"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the bundle lacks %s", want)
		}
	}
	if !verify.HasCertificate(b) {
		t.Error("HasCertificate = false for a certificate bundle")
	}
	if got, want := id.taskID("build"), "spiffe://ssf.local/pipeline/hello/task/build"; got != want {
		t.Errorf("taskID = %q, want %q", got, want)
	}
	// The certificate carries what the control plane knows of the run as Fulcio extensions.
	cert := mustProto(t, b).GetVerificationMaterial().GetCertificate().GetRawBytes()
	for _, want := range []string{"file:///src/ssf.yaml", digest.FromString("pipeline").Encoded(), "/builds/0b7c5b8e-0000-4000-8000-000000000000", "spiffe://ssf.local/pipeline/hello/task/build", "https://ssf.local/issuer"} {
		if !strings.Contains(string(cert), want) {
			t.Errorf("the task's certificate does not carry %q", want)
		}
	}
	if err := id.check(mustProto(t, b), id.taskID("build")); err != nil {
		t.Errorf("the bundle does not verify as its task: %v", err)
	}
	if err := id.check(mustProto(t, b), id.runID()); err == nil {
		t.Error("the task's bundle verifies as the run")
	}
}

// BenchmarkTaskIdentity measures what signing one task's attestation with its own identity costs a build: a
// fresh key, the node's signed request, a certificate with an embedded SCT, the signature, a durable log append
// with its proof, a TSA timestamp, and the check of the bundle against the trusted root (issue 9's goal: at most
// 50 ms per task).
func BenchmarkTaskIdentity(b *testing.B) {
	id := newTestIdentity(b)
	st := taskStatement(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := id.sign(context.Background(), id.taskID("build"), st); err != nil {
			b.Fatal(err)
		}
	}
}

func mustProto(t *testing.T, b []byte) *protobundle.Bundle {
	t.Helper()
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(b, &pb); err != nil {
		t.Fatal(err)
	}
	return &pb
}
