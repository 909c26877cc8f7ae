package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
	"github.com/ssf-dev/ssf/internal/vsa"
)

// policyFlags are ssf verify's flags for the ssf.verify gate and verification summaries.
type policyFlags struct {
	dir, vsaOut, signer, attestations string
	usePolicy                         bool   // --policy was given (even as "": the policy in effect)
	trustedRoot                       string // --trusted-root, when given: trust that is not this factory's own
	identity                          string // --certificate-identity, when given (for otherIdentityNote)
}

func (f *policyFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "policy", "", "evaluate the ssf.verify policy of this directory over every verified statement about the artifact (default with --vsa: $SSF_HOME/policy, else the built-in set)")
	fl.StringVar(&f.vsaOut, "vsa", "", "write a signed SLSA verification summary (a Sigstore bundle) to this file, PASSED or FAILED")
	fl.StringVar(&f.signer, "vsa-signer", factory.SignerIdentity, "what signs the summary: identity (a certificate for spiffe://TD/verifier, logged and timestamped) or key (the factory's provenance key)")
	fl.StringVar(&f.attestations, "attestations", "", "the build's attestations directory (OUT/attestations): every *.sigstore.json in it is evidence (default: found beside the file)")
}

// active says whether ssf verify evaluates ssf.verify (and collects every statement, not only the provenance).
func (f *policyFlags) active(cmd *cobra.Command) bool {
	f.usePolicy = cmd.Flags().Changed("policy")
	return f.usePolicy || f.vsaOut != "" || f.attestations != ""
}

// verifyWithPolicy is ssf verify --policy/--vsa: it collects every verified statement about the artifact (a file
// with its bundles, or a registry manifest's referrers), requires the provenance verdict, evaluates ssf.verify over
// the statements, prints every denial, and writes a signed summary when asked — FAILED ones too.
func verifyWithPolicy(cmd *cobra.Command, artifact string, remote bool, bundles []string, opts verify.Options, pf *policyFlags, reg registryFlags, verbose bool, output outputFormat) error {
	ctx := cmd.Context()
	if pf.signer != factory.SignerKey && pf.signer != factory.SignerIdentity {
		return usagef("--vsa-signer %q: want %q or %q", pf.signer, factory.SignerIdentity, factory.SignerKey)
	}
	if pf.vsaOut != "" {
		if _, err := os.Lstat(pf.vsaOut); err == nil {
			return usagef("--vsa %q already exists: a summary is never written over another file; remove it or name another", pf.vsaOut)
		}
		// Its directory is checked now, not when the signed summary is written: by then the summary's entry is in
		// the factory's transparency log, for a file that is never written.
		if fi, err := os.Stat(filepath.Dir(pf.vsaOut)); err != nil || !fi.IsDir() {
			return usagef("--vsa %q: its directory %q does not exist or is not a directory: create it or name a file in another", pf.vsaOut, filepath.Dir(pf.vsaOut))
		}
	}
	if pf.usePolicy && pf.dir == "" {
		return usagef("--policy needs a directory (leave --policy out to use $SSF_HOME/policy or the built-in set)")
	}
	pol, err := loadPolicy(ctx, pf.dir) // policyflag.go: a set that does not compile is bad input
	if err != nil {
		return err
	}
	// The summary's signer is tried before anything is verified: a factory that cannot sign (no home, no key or
	// trust) is said at once, not after the verdict. It is opened again to sign, so an identity signer does not
	// hold the factory's log (which builds wait for) while a registry is read.
	if pf.vsaOut != "" {
		if err := withVerifier(ctx, cmd.ErrOrStderr(), pf.signer, func(*factory.Verifier) error { return nil }); err != nil {
			return err
		}
	}

	var ev *verify.Evidence
	if remote {
		rctx, cancel, ropts, err := reg.context(ctx)
		if err != nil {
			return err
		}
		defer cancel()
		ev, err = verify.ReferenceEvidence(rctx, artifact, opts, ropts...)
		if errors.Is(err, verify.ErrBadReference) {
			return &usageError{err}
		}
		if err != nil {
			return deadlineError(rctx, err)
		}
	} else {
		if _, err := os.Stat(artifact); err != nil {
			return usagef("artifact: %w", err)
		}
		paths, err := evidencePaths(cmd.ErrOrStderr(), artifact, bundles, pf.attestations)
		if err != nil {
			return err
		}
		if ev, err = verify.FileEvidence(ctx, artifact, paths, opts); err != nil {
			return &usageError{err} // not a regular file, too many bundles: the request is malformed
		}
	}
	if verbose {
		for _, s := range ev.Statements {
			// Escaped: whoever can write an attestations directory names its files, and a signed statement's
			// predicateType is a string of its signer's.
			fmt.Fprintf(cmd.ErrOrStderr(), "  verified %s from %s (%s), signed by %s\n", printable(s.PredicateType), printable(s.Source), s.Bundle, signerText(s.Signer))
		}
		for _, s := range ev.Skipped {
			fmt.Fprintf(cmd.ErrOrStderr(), "ssf: note: skipped: %s\n", printable(s.Error()))
		}
	} else if note := otherIdentityNote(ev.Skipped, pf.identity); note != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), note)
	}

	var problems []string // why the verification FAILED, each a line for people
	if ev.Provenance == nil {
		problems = append(problems, printable(ev.ProvenanceErr.Error()))
	}
	decision, evalErr := pol.Set.Evaluate(ctx, policy.Verify, ev.VerifyInput())
	if evalErr != nil {
		problems = append(problems, printable(evalErr.Error()))
	}
	for _, d := range decision.Denials {
		problems = append(problems, "policy ssf.verify denied: "+printable(d))
	}
	passed := len(problems) == 0
	levels := vsa.Levels(ev.LevelStatements(), ev.Digest) // the verdict's provenance, not the best of any
	if why := foreignSigner(ev, pf.trustedRoot); why != "" && len(levels) > 0 {
		// The rules read what the provenance claims of the build (isolation, pinning); they are this factory's to
		// vouch for only when this factory signed it. Evidence verified with a key or root the caller chose
		// (anyone's: a key made a minute ago signs a provenance claiming every isolation field) shows that a
		// provenance exists, SLSA_BUILD_LEVEL_1, and no more, whatever it claims.
		levels = []string{vsa.BuildLevel1}
		fmt.Fprintf(cmd.ErrOrStderr(), "ssf: note: levels: %s only: the provenance is signed by %s, not by this factory (its provenance key, or a certificate of its CA verified with its own trust: no --trusted-root)\n", vsa.BuildLevel1, why)
	}

	var vsaLine string
	if pf.vsaOut != "" {
		err := withVerifier(ctx, cmd.ErrOrStderr(), pf.signer, func(v *factory.Verifier) (err error) {
			vsaLine, err = writeSummary(ctx, v, ev, pol, pf, passed, levels)
			return err
		})
		if err != nil {
			return err
		}
	}
	if vsaLine != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), vsaLine)
	}
	if !passed {
		// Every problem, one per line, in the error itself: with --output json it is the error object's message.
		return fmt.Errorf("%w: %s (%s) did not pass (policy %s, %s):\n  - %s", verify.ErrVerification, ev.URI, ev.Digest,
			pol.Source, pol.Set.Digest(), strings.Join(problems, "\n  - "))
	}
	if output == outputJSON {
		return writeJSON(cmd.OutOrStdout(), policyVerdictJSON(ev, pol, levels, pf.vsaOut))
	}
	p := ev.Provenance.Provenance
	// A file is named with its digest; a reference is REGISTRY/REPO@sha256:<digest> already (its digest was printed
	// twice), with the tag it was resolved from, as plain ssf verify REF says.
	what := ev.URI + " " + string(ev.Digest)
	if remote {
		what = ev.URI
		if artifact != ev.URI {
			what += " (tag " + printable(artifact) + ")"
		}
	}
	statements := fmt.Sprintf("%d statements", len(ev.Statements))
	if len(ev.Statements) == 1 {
		statements = "1 statement"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "verified: %s built by %s (pipeline %s, invocation %s)%s; policy ssf.verify allowed it (%s, %s); %s, levels %s\n",
		what, p.BuilderID, p.PipelineName, p.InvocationID, signedBy(ev.Provenance), pol.Source, pol.Set.Digest(),
		statements, strings.Join(levels, " "))
	return nil
}

// foreignSigner says who signed the provenance the verdict rests on when that is not this factory ("" when it is,
// or when there is no verdict): a key other than the factory's provenance key, or a certificate verified with a
// --trusted-root the caller gave rather than the factory's own trust.
func foreignSigner(ev *verify.Evidence, trustedRoot string) string {
	if ev.Provenance == nil {
		return ""
	}
	var signer policy.Signer
	for _, s := range ev.Statements {
		if s.Bundle == ev.ProvenanceBundle {
			signer = s.Signer
		}
	}
	h, err := home()
	if signer.Key == "" {
		if trustedRoot == "" {
			return "" // the local factory's own trust (verify_identity.go)
		}
		// This factory's own root, exported (ssf trust export), is its own trust too.
		given, gerr := readBounded(trustedRoot, maxTrustedRoot, "a Sigstore trusted root")
		var own []byte
		if err == nil {
			own, err = h.TrustedRoot()
		}
		if gerr != nil || err != nil || !bytes.Equal(bytes.TrimSpace(given), bytes.TrimSpace(own)) {
			return printable(signer.Identity) + " verified with --trusted-root " + printable(trustedRoot) + " (not this factory's trusted root)"
		}
		return ""
	}
	if err != nil {
		return "key " + signer.Key + " (" + err.Error() + ")"
	}
	key, err := sign.LoadKey(h.KeyPath())
	if err != nil {
		return "key " + signer.Key + " (this factory's provenance key: " + err.Error() + ")"
	}
	if own, err := verify.KeyFingerprint(&key.PublicKey); err != nil || own != signer.Key {
		return "key " + signer.Key + " (this factory's provenance key is " + own + ")"
	}
	return ""
}

// evidencePaths is the bundles given, and those of the attestations directory: --attestations, or when neither
// it nor --bundle is given, the attestations directory of the build OUT the file is in (the first ancestor holding
// attestations/provenance.sigstore.json), said on w.
func evidencePaths(w io.Writer, file string, bundles []string, dir string) ([]string, error) {
	if dir == "" && len(bundles) == 0 {
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, usagef("artifact: %w", err)
		}
		for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
			if fi, err := os.Lstat(filepath.Join(d, factory.BundlePath)); err == nil && fi.Mode().IsRegular() {
				dir = filepath.Dir(filepath.Join(d, factory.BundlePath))
				fmt.Fprintf(w, "ssf: note: evidence from %s\n", dir)
				break
			}
			if filepath.Dir(d) == d {
				return nil, usagef("no evidence for %s: give --bundle FILE (repeatable) or --attestations OUT/attestations (no attestations/provenance.sigstore.json was found in the directories above it)", file)
			}
		}
	}
	if dir == "" {
		return bundles, nil
	}
	found, err := verify.AttestationBundles(dir)
	if err != nil {
		return nil, usagef("--attestations: %w", err)
	}
	return append(append([]string{}, bundles...), found...), nil
}

// withVerifier opens the factory's signer of summaries, calls f with it, and closes it.
func withVerifier(ctx context.Context, log io.Writer, signer string, f func(*factory.Verifier) error) error {
	h, err := home()
	if err != nil {
		return err
	}
	v, err := h.OpenVerifier(ctx, signer, log)
	if err != nil {
		return fmt.Errorf("--vsa: %w", err)
	}
	defer v.Close(context.WithoutCancel(ctx))
	if err := f(v); err != nil {
		return err
	}
	return v.Close(ctx)
}

// writeSummary signs the summary of the verification and writes it to --vsa, returning the line that says so.
func writeSummary(ctx context.Context, v *factory.Verifier, ev *verify.Evidence, pol *factory.Policy, pf *policyFlags, passed bool, levels []string) (string, error) {
	s := vsa.Summary{
		VerifierID: v.ID, Version: map[string]string{"ssf": factory.Version}, TimeVerified: time.Now(),
		ResourceURI: ev.URI, Subject: subjectName(ev.URI), Digest: ev.Digest,
		PolicyURI: policyURI(pol.Source), PolicyDigest: pol.Set.Digest(), Passed: passed, Levels: levels,
	}
	for _, st := range ev.Statements {
		s.Inputs = append(s.Inputs, vsa.Input{URI: st.Source, Digest: st.Bundle})
	}
	statement, err := vsa.Statement(s)
	if err != nil {
		return "", err
	}
	bundle, err := v.Attestor.Statement(ctx, statement)
	if err != nil {
		return "", fmt.Errorf("signing the verification summary: %w", err)
	}
	if err := v.Close(ctx); err != nil { // the log is released (the entry is durable already) before the file is written
		return "", fmt.Errorf("signing the verification summary: %w", err)
	}
	if err := durable.WriteNew(pf.vsaOut, bundle, 0o644); err != nil {
		return "", fmt.Errorf("writing the verification summary: %w", err)
	}
	result, lv := vsa.Failed, vsa.Failed
	if passed {
		result, lv = vsa.Passed, strings.Join(levels, " ")
	}
	by := "the factory's provenance key"
	if v.Identity != "" {
		by = v.Identity + " (issuer " + v.Issuer + ")"
	}
	return fmt.Sprintf("ssf: verification summary %s: %s, levels %s, signed by %s", pf.vsaOut, result, lv, by), nil
}

// subjectName is the summary subject's name: a file's base name, or the registry reference.
func subjectName(uri string) string {
	if strings.Contains(uri, "@sha256:") {
		return uri
	}
	return filepath.Base(uri)
}

// policyURI names the policy set in a summary: file://DIR for a directory, the source itself for the built-in set.
func policyURI(source string) string {
	if filepath.IsAbs(source) {
		return (&url.URL{Scheme: "file", Path: source}).String()
	}
	return source
}

func signerText(s policy.Signer) string {
	if s.Key != "" {
		return "key " + s.Key
	}
	return printable(s.Identity) + " (issuer " + printable(s.Issuer) + ")"
}

// policyVerifyJSON is ssf verify --policy/--vsa --output json.
type policyVerifyJSON struct {
	Verified   bool            `json:"verified"` // always true: a failure is the error object instead
	Artifact   policy.Artifact `json:"artifact"`
	Policy     policyRefJSON   `json:"policy"`
	Levels     []string        `json:"levels"`
	Statements []statementJSON `json:"statements"`
	Skipped    []string        `json:"skipped"`
	VSA        string          `json:"vsa,omitempty"`
}

type policyRefJSON struct {
	Source string `json:"source"`
	Digest string `json:"digest"`
}

type statementJSON struct {
	PredicateType string        `json:"predicateType"`
	Signer        policy.Signer `json:"signer"`
	Bundle        string        `json:"bundle"`
	Source        string        `json:"source"`
}

// policyVerdictJSON is the verdict of a verification that passed (a failure is the error object instead).
func policyVerdictJSON(ev *verify.Evidence, pol *factory.Policy, levels []string, vsaOut string) policyVerifyJSON {
	j := policyVerifyJSON{Verified: true, Artifact: policy.Artifact{URI: ev.URI, Digest: string(ev.Digest)},
		Policy: policyRefJSON{pol.Source, pol.Set.Digest()},
		Levels: append([]string{}, levels...), Statements: []statementJSON{}, Skipped: []string{}, VSA: vsaOut}
	for _, s := range ev.Statements {
		j.Statements = append(j.Statements, statementJSON{s.PredicateType, s.Signer, string(s.Bundle), s.Source})
	}
	for _, s := range ev.Skipped {
		j.Skipped = append(j.Skipped, printable(s.Error()))
	}
	return j
}

// otherIdentityNote says, without -v, that bundles were skipped as signed by another identity than the one given
// ("" when none was). With --certificate-identity spiffe://TD/pipeline/NAME, as the build's summary line suggests,
// the build's task attestations are left out of input.statements and of the summary's levels (no
// SSF_TASKS_LEVEL_1); without this note nothing said so, and a newcomer expected them in.
func otherIdentityNote(skipped []verify.SkippedBundle, san string) string {
	n := 0
	for _, s := range skipped {
		if verify.SignedByAnotherIdentity(s.Reason) {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	what := "1 bundle was"
	if n > 1 {
		what = fmt.Sprintf("%d bundles were", n)
	}
	if san == "" { // a regexp was given
		return fmt.Sprintf("ssf: note: %s skipped as signed by another identity than the one given (-v lists them)", what)
	}
	msg := fmt.Sprintf("ssf: note: %s skipped as signed by another identity than --certificate-identity %s (-v lists them)", what, printable(san))
	if strings.Contains(san, "/pipeline/") && !strings.Contains(san, "/task/") {
		msg += fmt.Sprintf("; a build's task attestations are signed by its tasks' identities (%s/task/TASK): --certificate-identity-regexp '^%s(/task/[^/]+)?$' takes them in too", printable(san), printable(regexp.QuoteMeta(san)))
	}
	return msg
}
