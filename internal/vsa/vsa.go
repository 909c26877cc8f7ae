// Package vsa writes SLSA verification summaries (https://slsa.dev/verification_summary/v1): what `ssf verify
// --vsa` concluded about one artifact, from which verified evidence, under which policy, and which SLSA levels
// that evidence shows. The levels are computed by the rules of [Levels] (docs/policy.md, "Verification
// summaries"), from the verified statements only.
//
// # What it must never do
//
// It must never claim a level from anything but a statement that verified against the trusted material (the
// evidence of internal/verify holds nothing else), never claim a level for a FAILED verification (verifiedLevels
// is then ["FAILED"], as the SLSA spec asks), and never write a summary whose subject is not the artifact that
// was verified. It signs nothing itself: the caller signs the statement it returns.
package vsa

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// PredicateType is the SLSA verification summary v1 predicate.
const PredicateType = "https://slsa.dev/verification_summary/v1"

// The results and levels a summary can hold. SSF_* levels are ssf's own tracks (the spec reserves SLSA_ for its
// own); docs/policy.md gives each rule.
const (
	Passed = "PASSED"
	Failed = "FAILED"

	BuildLevel1 = "SLSA_BUILD_LEVEL_1"
	BuildLevel2 = "SLSA_BUILD_LEVEL_2"
	BuildLevel3 = "SLSA_BUILD_LEVEL_3"
	// SBOMLevel: both an SPDX and a CycloneDX SBOM of the artifact verified, from the provenance's signer.
	SBOMLevel = "SSF_SBOM_LEVEL_1"
	// TasksLevel: a task attestation naming the artifact verified, signed by that task's own identity.
	TasksLevel = "SSF_TASKS_LEVEL_1"
	// DependenciesLevel: every resolved dependency of the provenance is pinned by a digest the factory checked.
	DependenciesLevel = "SSF_DEPENDENCIES_LEVEL_1"
)

// Input is one verified attestation the summary rests on.
type Input struct {
	URI    string        // where its bundle came from (a file, or REGISTRY/REPO@sha256:<bundle digest>)
	Digest digest.Digest // sha256 of the bundle's bytes
}

// Summary is what a verification concluded.
type Summary struct {
	VerifierID   string
	Version      map[string]string // verifier.version, e.g. {"ssf": "v0.1.0"}
	TimeVerified time.Time
	ResourceURI  string
	Subject      string        // the artifact's name as the summary's subject names it
	Digest       digest.Digest // the artifact's sha256
	PolicyURI    string
	PolicyDigest string // "sha256:<hex>", policy.Digest
	Inputs       []Input
	Passed       bool
	Levels       []string // ignored when !Passed
}

// Statement returns the in-toto Statement v1 of s, with predicate PredicateType.
func Statement(s Summary) ([]byte, error) {
	if _, err := content.Parse(string(s.Digest)); err != nil {
		return nil, fmt.Errorf("writing the verification summary: artifact %w", err)
	}
	pd, err := content.Parse(s.PolicyDigest)
	if err != nil {
		return nil, fmt.Errorf("writing the verification summary: policy %w", err)
	}
	if s.VerifierID == "" || s.ResourceURI == "" || s.PolicyURI == "" || s.TimeVerified.IsZero() {
		return nil, errors.New("writing the verification summary: verifier id, resource uri, policy uri and time are required")
	}
	type rd struct {
		URI    string            `json:"uri"`
		Digest provenance.Digest `json:"digest"`
	}
	inputs := []rd{}
	for _, in := range s.Inputs {
		inputs = append(inputs, rd{URI: in.URI, Digest: provenance.DigestSet(in.Digest)})
	}
	result, levels := Failed, []string{Failed}
	if s.Passed {
		result, levels = Passed, slices.Clone(s.Levels)
		if levels == nil {
			levels = []string{}
		}
	}
	type verifier struct {
		ID      string            `json:"id"`
		Version map[string]string `json:"version,omitempty"`
	}
	pred := struct {
		Verifier           verifier `json:"verifier"`
		TimeVerified       string   `json:"timeVerified"`
		ResourceURI        string   `json:"resourceUri"`
		Policy             rd       `json:"policy"`
		InputAttestations  []rd     `json:"inputAttestations"`
		VerificationResult string   `json:"verificationResult"`
		VerifiedLevels     []string `json:"verifiedLevels"`
		SlsaVersion        string   `json:"slsaVersion"`
	}{
		Verifier:           verifier{ID: s.VerifierID, Version: s.Version},
		TimeVerified:       s.TimeVerified.UTC().Format(time.RFC3339),
		ResourceURI:        s.ResourceURI,
		Policy:             rd{URI: s.PolicyURI, Digest: provenance.DigestSet(pd)},
		InputAttestations:  inputs,
		VerificationResult: result,
		VerifiedLevels:     levels,
		SlsaVersion:        "1.0",
	}
	type subject struct {
		Name   string            `json:"name"`
		Digest provenance.Digest `json:"digest"`
	}
	return json.Marshal(struct {
		Type          string    `json:"_type"`
		Subject       []subject `json:"subject"`
		PredicateType string    `json:"predicateType"`
		Predicate     any       `json:"predicate"`
	}{provenance.StatementType, []subject{{Name: s.Subject, Digest: provenance.DigestSet(s.Digest)}}, PredicateType, pred})
}

// Levels computes the levels the verified statements show for the artifact (docs/policy.md gives the rules):
//
//   - SLSA_BUILD_LEVEL_1: a provenance statement (SLSA provenance v1) of an ssf pipeline build names the artifact.
//   - SLSA_BUILD_LEVEL_2: L1, and that provenance is signed — by the trusted key, or by a certificate of the
//     trusted CA naming the run's identity spiffe://TD/pipeline/<its pipeline>. Every statement given here verified
//     against the trusted material, so this is "signed by the factory", not "signed by someone".
//   - SLSA_BUILD_LEVEL_3: L2, and the same provenance records an isolated, ephemeral, hermetic build:
//     internalParameters.network "none" and seccomp "true"; a leased host uid (internalParameters.uid, not 0); at
//     least one task, and for every task (internalParameters.tasks): network "none", a read-only root, no
//     capabilities, no_new_privs, a seccomp profile digest, a host uid and gid other than 0; and every resolved
//     dependency pinned by a digest, and no task cache warm (what an earlier build left). The signer is one the build's steps cannot reach: the factory's provenance
//     key (never mounted into a task) or a certificate for the run's identity (its key made and dropped by the
//     control plane) — never a task's identity (a task's certificate vouches for the task, not the build).
//   - SSF_DEPENDENCIES_LEVEL_1: every resolvedDependency of that provenance has a sha256 or gitCommit digest.
//   - SSF_SBOM_LEVEL_1: an SPDX and a CycloneDX SBOM statement name the artifact, signed by the provenance's
//     signer.
//   - SSF_TASKS_LEVEL_1: a task attestation names the artifact, signed by that task's identity
//     (spiffe://TD/pipeline/<pipeline>/task/<task>, the pipeline and task its predicate names).
//
// Only the highest build level is returned, as the spec asks (verifiedLevels holds one level per track).
func Levels(statements []policy.Statement, artifact digest.Digest) []string {
	about := func(s policy.Statement) bool {
		return slices.ContainsFunc(s.Subject, func(sub policy.Subject) bool { return sub.Digest["sha256"] == artifact.Encoded() })
	}
	build, buildSigner, deps := 0, policy.Signer{}, false
	for _, s := range statements {
		if s.PredicateType != provenance.PredicateType || !about(s) {
			continue
		}
		var p provPredicate
		if json.Unmarshal(s.Predicate, &p) != nil || p.BuildDefinition.BuildType != provenance.BuildType {
			continue
		}
		level := 1
		if runSigned(s.Signer, p.BuildDefinition.ExternalParameters.Pipeline.Name) {
			level = 2
			if p.isolatedEphemeralHermetic() {
				level = 3
			}
		}
		if level > build {
			build, buildSigner = level, s.Signer
			deps = p.pinned()
		}
	}
	var out []string
	if build > 0 {
		out = append(out, fmt.Sprintf("SLSA_BUILD_LEVEL_%d", build))
	}
	if build > 0 && deps {
		out = append(out, DependenciesLevel)
	}
	var spdx, cdx, task bool
	for _, s := range statements {
		if !about(s) {
			continue
		}
		switch s.PredicateType {
		case content.SPDXPredicateType:
			spdx = spdx || build > 0 && s.Signer == buildSigner
		case content.CycloneDXPredicateType:
			cdx = cdx || build > 0 && s.Signer == buildSigner
		case content.TaskPredicateType:
			var t struct {
				Pipeline string `json:"pipeline"`
				Task     string `json:"task"`
			}
			if json.Unmarshal(s.Predicate, &t) == nil && t.Pipeline != "" && t.Task != "" &&
				strings.HasSuffix(s.Signer.Identity, "/pipeline/"+t.Pipeline+"/task/"+t.Task) && strings.HasPrefix(s.Signer.Identity, "spiffe://") {
				task = true
			}
		}
	}
	if spdx && cdx {
		out = append(out, SBOMLevel)
	}
	if task {
		out = append(out, TasksLevel)
	}
	return out
}

// runSigned says whether signer signed as a factory would sign a build's provenance: a key (the caller trusted
// exactly one), or a certificate for the run's identity spiffe://TD/pipeline/<pipeline>.
func runSigned(s policy.Signer, pipeline string) bool {
	if s.Key != "" {
		return true
	}
	td, rest, ok := strings.Cut(strings.TrimPrefix(s.Identity, "spiffe://"), "/")
	return ok && td != "" && strings.HasPrefix(s.Identity, "spiffe://") && pipeline != "" && rest == "pipeline/"+pipeline && s.Issuer != ""
}

// provPredicate is what Levels reads of an ssf provenance predicate.
type provPredicate struct {
	BuildDefinition struct {
		BuildType          string `json:"buildType"`
		ExternalParameters struct {
			Pipeline struct {
				Name string `json:"name"`
			} `json:"pipeline"`
		} `json:"externalParameters"`
		InternalParameters struct {
			Network string                              `json:"network"`
			Seccomp string                              `json:"seccomp"`
			UID     string                              `json:"uid"`
			Tasks   map[string]provenance.TaskIsolation `json:"tasks"`
		} `json:"internalParameters"`
		ResolvedDependencies []struct {
			Name        string            `json:"name"`
			Digest      provenance.Digest `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"resolvedDependencies"`
	} `json:"buildDefinition"`
}

func (p provPredicate) isolatedEphemeralHermetic() bool {
	in := p.BuildDefinition.InternalParameters
	if in.Network != "none" || in.Seccomp != "true" || in.UID == "" || in.UID == "0" || len(in.Tasks) == 0 || !p.pinned() {
		return false
	}
	// A task cache (docs/caches.md) that was warm is what an earlier build's steps left, read by this build's: SLSA
	// Build L3 requires that no build can inject cache entries another uses. Only "empty" and "disabled" (--no-cache)
	// caches are no such input; any other state, or none, is taken as warm.
	for _, d := range p.BuildDefinition.ResolvedDependencies {
		if st := d.Annotations["state"]; strings.HasPrefix(d.Name, "cache/") && st != "empty" && st != "disabled" {
			return false
		}
	}
	for _, t := range in.Tasks {
		if t.Network != "none" || !t.ReadOnlyRoot || len(t.Capabilities) != 0 || !t.NoNewPrivileges ||
			t.SeccompProfile["sha256"] == "" || t.HostUID == 0 || t.HostGID == 0 {
			return false
		}
	}
	return true
}

// pinned says whether every resolved dependency (there is at least the source) has a sha256 or gitCommit digest.
func (p provPredicate) pinned() bool {
	deps := p.BuildDefinition.ResolvedDependencies
	if len(deps) == 0 {
		return false
	}
	for _, d := range deps {
		if d.Digest["sha256"] == "" && d.Digest["gitCommit"] == "" {
			return false
		}
	}
	return true
}
