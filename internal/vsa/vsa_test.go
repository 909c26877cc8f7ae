package vsa_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/vsa"
)

var artifact = digest.FromString("app")

const (
	run  = "spiffe://ssf.local/pipeline/app"
	iss  = "https://ssf.local/issuer"
	task = "spiffe://ssf.local/pipeline/app/task/build"
)

func subject(d digest.Digest) []policy.Subject {
	return []policy.Subject{{Name: "app", Digest: map[string]string{"sha256": d.Encoded()}}}
}

// isolation is one task's record as the factory writes it for a sandboxed task.
func isolation() map[string]any {
	return map[string]any{"network": "none", "readOnlyRoot": true, "hostUid": 1879048192, "hostGid": 1879048192,
		"capabilities": []string{}, "noNewPrivileges": true, "seccompProfile": map[string]string{"sha256": strings.Repeat("a", 64)},
		"memoryBytes": 1 << 30, "pids": 1024, "timeoutSeconds": 60, "runtime": "runc", "runtimeVersion": "runc version 1.1.5"}
}

// prov is an ssf provenance statement about d; change edits its predicate first.
func prov(d digest.Digest, signer policy.Signer, change func(p map[string]any)) policy.Statement {
	p := map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          provenance.BuildType,
			"externalParameters": map[string]any{"pipeline": map[string]any{"name": "app"}},
			"internalParameters": map[string]any{"runtime": "runc version 1.1.5", "uid": "1879048192", "network": "none", "seccomp": "true",
				"tasks": map[string]any{"build": isolation()}},
			"resolvedDependencies": []any{
				map[string]any{"name": "source", "digest": map[string]string{"gitCommit": strings.Repeat("1", 40)}},
				map[string]any{"name": "builder", "digest": map[string]string{"sha256": strings.Repeat("2", 64)}},
			},
		},
		"runDetails": map[string]any{"builder": map[string]any{"id": "https://ssf.dev/factory/host"}},
	}
	if change != nil {
		change(p)
	}
	raw, _ := json.Marshal(p)
	return policy.Statement{Type: provenance.StatementType, Subject: subject(d), PredicateType: provenance.PredicateType, Predicate: raw, Signer: signer}
}

// addCache records a task cache in state as a resolved dependency, as the factory does (docs/caches.md).
func addCache(p map[string]any, state string) {
	bd := p["buildDefinition"].(map[string]any)
	ann := map[string]string{"task": "build", "cache": "go", "path": "/tmp/gocache", "storedBy": "1a93a9cb"}
	if state != "" {
		ann["state"] = state
	}
	bd["resolvedDependencies"] = append(bd["resolvedDependencies"].([]any), map[string]any{"name": "cache/build/go", "uri": "ssf-cache:7033e9ab",
		"mediaType": "application/x-tar", "digest": map[string]string{"sha256": strings.Repeat("5", 64)}, "annotations": ann})
}

func other(predicateType string, signer policy.Signer, pred string) policy.Statement {
	return policy.Statement{Type: provenance.StatementType, Subject: subject(artifact), PredicateType: predicateType, Predicate: json.RawMessage(pred), Signer: signer}
}

func internal(p map[string]any) map[string]any {
	return p["buildDefinition"].(map[string]any)["internalParameters"].(map[string]any)
}

func buildTask(p map[string]any) map[string]any {
	return internal(p)["tasks"].(map[string]any)["build"].(map[string]any)
}

// TestLevels: each level's rule, from the statements alone, with the cases just below each threshold.
func TestLevels(t *testing.T) {
	runSigner := policy.Signer{Identity: run, Issuer: iss}
	key := policy.Signer{Key: "sha256:" + strings.Repeat("c", 64)}
	taskSigner := policy.Signer{Identity: task, Issuer: iss}
	spdx := other(content.SPDXPredicateType, runSigner, `{}`)
	cdx := other(content.CycloneDXPredicateType, runSigner, `{}`)
	taskAtt := other(content.TaskPredicateType, taskSigner, `{"pipeline":"app","task":"build"}`)
	for _, tc := range []struct {
		name       string
		statements []policy.Statement
		want       []string
	}{
		{"nothing", nil, nil},
		{"L3 by the run's certificate", []policy.Statement{prov(artifact, runSigner, nil)}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
		{"L3 by the factory key", []policy.Statement{prov(artifact, key, nil)}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
		{"everything", []policy.Statement{prov(artifact, runSigner, nil), spdx, cdx, taskAtt},
			[]string{vsa.BuildLevel3, vsa.DependenciesLevel, vsa.SBOMLevel, vsa.TasksLevel}},
		{"about another artifact", []policy.Statement{prov(digest.FromString("other"), runSigner, nil)}, nil},
		{"another build type", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) {
			p["buildDefinition"].(map[string]any)["buildType"] = "https://example.com/other"
		})}, nil},
		{"signed by a task: L1", []policy.Statement{prov(artifact, taskSigner, nil)}, []string{vsa.BuildLevel1, vsa.DependenciesLevel}},
		{"signed as another pipeline: L1", []policy.Statement{prov(artifact, policy.Signer{Identity: "spiffe://ssf.local/pipeline/other", Issuer: iss}, nil)}, []string{vsa.BuildLevel1, vsa.DependenciesLevel}},
		{"task with a network: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { buildTask(p)["network"] = "host" })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"task with a capability: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { buildTask(p)["capabilities"] = []string{"CAP_SYS_ADMIN"} })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"writable root: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { buildTask(p)["readOnlyRoot"] = false })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"no seccomp profile: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { delete(buildTask(p), "seccompProfile") })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"host root uid: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { buildTask(p)["hostUid"] = 0 })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"no tasks recorded: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { delete(internal(p), "tasks") })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"build network: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { internal(p)["network"] = "" })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"unpinned dependency: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) {
			bd := p["buildDefinition"].(map[string]any)
			bd["resolvedDependencies"] = append(bd["resolvedDependencies"].([]any), map[string]any{"name": "x", "digest": map[string]string{}})
		})}, []string{vsa.BuildLevel2}},
		// A warm task cache is what an earlier build's steps left (docs/caches.md): SLSA Build L3 requires that no
		// build can inject cache entries another build uses. An empty or disabled (--no-cache) one is no such input.
		{"a warm task cache: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { addCache(p, "warm") })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"a task cache without a state: L2", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { addCache(p, "") })}, []string{vsa.BuildLevel2, vsa.DependenciesLevel}},
		{"an empty task cache: L3", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { addCache(p, "empty") })}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
		{"a disabled task cache (--no-cache): L3", []policy.Statement{prov(artifact, runSigner, func(p map[string]any) { addCache(p, "disabled") })}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
		{"SBOMs by another signer", []policy.Statement{prov(artifact, key, nil), spdx, cdx}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
		{"one SBOM only", []policy.Statement{prov(artifact, runSigner, nil), spdx}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
		{"SBOMs without provenance", []policy.Statement{spdx, cdx}, nil},
		{"task attestation by another task", []policy.Statement{other(content.TaskPredicateType, policy.Signer{Identity: run + "/task/test", Issuer: iss}, `{"pipeline":"app","task":"build"}`)}, nil},
		{"task attestation alone", []policy.Statement{taskAtt}, []string{vsa.TasksLevel}},
		{"the best provenance counts", []policy.Statement{prov(artifact, taskSigner, nil), prov(artifact, key, nil)}, []string{vsa.BuildLevel3, vsa.DependenciesLevel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := vsa.Levels(tc.statements, artifact); !slices.Equal(got, tc.want) {
				t.Errorf("Levels() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStatement: the summary's shape (what cosign and SLSA consumers read), PASSED with its levels and FAILED with
// ["FAILED"] whatever levels are given.
func TestStatement(t *testing.T) {
	s := vsa.Summary{VerifierID: "https://ssf.dev/factory/host/verifier", Version: map[string]string{"ssf": "v1"},
		TimeVerified: time.Date(2026, 11, 30, 10, 0, 0, 0, time.FixedZone("x", 3600)), ResourceURI: "out/app", Subject: "app",
		Digest: artifact, PolicyURI: "file:///etc/ssf/policy", PolicyDigest: "sha256:" + strings.Repeat("d", 64),
		Inputs: []vsa.Input{{URI: "out/attestations/provenance.sigstore.json", Digest: digest.FromString("bundle")}},
		Passed: true, Levels: []string{vsa.BuildLevel3}}
	got, err := vsa.Statement(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app","digest":{"sha256":"` + artifact.Encoded() + `"}}],` +
		`"predicateType":"https://slsa.dev/verification_summary/v1","predicate":{"verifier":{"id":"https://ssf.dev/factory/host/verifier","version":{"ssf":"v1"}},` +
		`"timeVerified":"2026-11-30T09:00:00Z","resourceUri":"out/app","policy":{"uri":"file:///etc/ssf/policy","digest":{"sha256":"` + strings.Repeat("d", 64) + `"}},` +
		`"inputAttestations":[{"uri":"out/attestations/provenance.sigstore.json","digest":{"sha256":"` + digest.FromString("bundle").Encoded() + `"}}],` +
		`"verificationResult":"PASSED","verifiedLevels":["SLSA_BUILD_LEVEL_3"],"slsaVersion":"1.0"}}`
	if string(got) != want {
		t.Errorf("Statement() =\n%s\nwant\n%s", got, want)
	}

	s.Passed = false
	got, err = vsa.Statement(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"verificationResult":"FAILED","verifiedLevels":["FAILED"]`) {
		t.Errorf("a failed summary: %s", got)
	}

	for name, bad := range map[string]func(*vsa.Summary){
		"no digest":         func(s *vsa.Summary) { s.Digest = "" },
		"bad policy digest": func(s *vsa.Summary) { s.PolicyDigest = "sha256:zz" },
		"no verifier":       func(s *vsa.Summary) { s.VerifierID = "" },
		"no time":           func(s *vsa.Summary) { s.TimeVerified = time.Time{} },
	} {
		c := s
		bad(&c)
		if _, err := vsa.Statement(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
