package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sbom"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newSBOMCmd() *cobra.Command {
	var format, keyPath string
	cmd := &cobra.Command{
		Use:   "sbom OUT/OUTPUT [--format table|spdx|cyclonedx] [--key KEY.pub]",
		Short: "Print the attested SBOM of a build output",
		Long: `Print the software bill of materials of OUTPUT, a file in the --out directory OUT of ssf build.

The factory writes two SBOMs of every output, SPDX 2.3 and CycloneDX 1.6, each signed as an in-toto statement:
  OUT/attestations/OUTPUT.spdx.sigstore.json   (predicate https://spdx.dev/Document)
  OUT/attestations/OUTPUT.cdx.sigstore.json    (predicate https://cyclonedx.org/bom)
Before anything is printed, the bundle's signature is verified against the local factory's trust: for a build
signed by identity (the default) its certificate must chain to the factory's CA, be logged and timestamped, and
name a run of its trust domain, spiffe://TD/pipeline/NAME, with its issuer (config.yaml); for a --signer key
build, the factory's provenance key (or --key KEY.pub). OUTPUT is hashed again: the signed statement must have a
subject of OUTPUT's name and sha256, and the build's provenance (OUT/attestations/provenance.sigstore.json,
verified the same way for OUTPUT) must list the bundle with its sha256, so an SBOM of another build of the same bytes is refused. The
bundle must be a regular file (not a symlink) beneath OUT's real directories. Names in the printed table and
JSON come from the output's build info, which a step wrote: characters a terminal would act on are printed
escaped.

--format table (the default) prints one line per component, sorted: name, version, type (go-module, npm or
file), purl, and whether the factory ingested it. For a Go binary the components are the modules its embedded
build info names, which a build step wrote; INGESTED "NO" marks one that the factory did not fetch and verify
against the lock files (or whose hash differs), and "-" the main module (the source itself). For other outputs
the components are the dependencies ingested for the task that made it. --format spdx or cyclonedx prints the
signed document itself, as JSON.

Exit status: 0 when the SBOM verifies; 1 when its signature or subject does not; 2 on bad usage, a missing
output, or an output without an SBOM attestation.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var suffixes []string
			var predicates []string
			switch format {
			case "table":
				// Either document gives the table; CycloneDX first, as its properties carry the flags directly.
				suffixes = []string{content.CycloneDXBundleSuffix, content.SPDXBundleSuffix}
				predicates = []string{content.CycloneDXPredicateType, content.SPDXPredicateType}
			case "spdx":
				suffixes, predicates = []string{content.SPDXBundleSuffix}, []string{content.SPDXPredicateType}
			case "cyclonedx":
				suffixes, predicates = []string{content.CycloneDXBundleSuffix}, []string{content.CycloneDXPredicateType}
			default:
				return usagef("--format %q: want table, spdx or cyclonedx", format)
			}
			out, rel, err := findOutput(a[0])
			if err != nil {
				return err
			}
			bundlePath, bundleName, predicateType, bundle, err := readSBOMBundle(out, rel, suffixes, predicates)
			if err != nil {
				return err
			}
			var trusted root.TrustedMaterial
			if keyPath != "" {
				if trusted, err = readTrustedKey(keyPath); err != nil {
					return err
				}
			} else if trusted, err = factoryMaterialFor(bundle); err != nil { // its key, or its trust for a keyless build
				return err
			}
			if err := (verify.Options{Trusted: trusted}).Validate(); err != nil {
				return &usageError{err}
			}
			sum, err := hashOutput(cmd, out, rel)
			if err != nil {
				return err
			}
			v, err := verify.Attestation(cmd.Context(), sum, bundle, trusted, predicateType)
			if err != nil {
				if errors.Is(err, verify.ErrVerification) {
					return fmt.Errorf("%s: %w", bundlePath, err)
				}
				return &usageError{err}
			}
			// The digest alone does not say which output the statement is about: two outputs with the same
			// bytes have different SBOMs (their names, the dependencies of the tasks that made them), and one's
			// bundle may have been copied over the other's.
			if !slices.Contains(v.Subjects, provenance.Subject{Name: rel, Digest: sum}) {
				return fmt.Errorf("%s: %w: the statement is not about output %q (subjects: %s)", bundlePath,
					verify.ErrVerification, rel, printable(subjectNames(v.Subjects)))
			}
			// Nor does it say which build: an earlier build of the same bytes had its own SBOM, cross-checked
			// against what that build ingested. The build's provenance lists its SBOM bundles by digest.
			listed, err := listedByProvenance(cmd, out, sum, trusted, bundlePath, bundleName, bundle)
			if err != nil {
				return err
			}
			if format != "table" {
				var doc bytes.Buffer
				if err := json.Indent(&doc, v.Predicate, "", "  "); err != nil {
					return fmt.Errorf("%s: %w", bundlePath, err)
				}
				doc.WriteByte('\n')
				_, err := cmd.OutOrStdout().Write(terminalSafeJSON(doc.Bytes()))
				return err
			}
			rows, err := sbom.Rows(predicateType, v.Predicate)
			if err != nil {
				return fmt.Errorf("%s: %w", bundlePath, err)
			}
			if err := printSBOMTable(cmd, rel, sum, bundlePath, rows); err != nil {
				return err
			}
			if !listed {
				fmt.Fprintf(cmd.ErrOrStderr(), "ssf: note: the build's provenance lists no SBOM bundles (made by an older ssf): this SBOM is not tied to this build\n")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table, spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.6 JSON)")
	cmd.Flags().StringVar(&keyPath, "key", "", "for a --signer key build: the provenance public key (PEM) to verify the SBOM with (default: the local factory's key; an identity build is verified against the local factory's trust)")
	return cmd
}

// readSBOMBundle reads the first of OUT/attestations/<rel><suffix> that exists (see readBundleIn).
func readSBOMBundle(out, rel string, suffixes, predicates []string) (bundlePath, name, predicateType string, bundle []byte, err error) {
	for i, s := range suffixes {
		p := filepath.Join(out, "attestations", filepath.FromSlash(rel)+s)
		b, err := readBundleIn(out, "attestations/"+rel+s)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", "", nil, err
		}
		return p, "attestations/" + rel + s, predicates[i], b, nil
	}
	return "", "", "", nil, usagef("output %q has no SBOM attestation: expected %s (ssf build writes one for every output)",
		rel, filepath.Join(out, "attestations", filepath.FromSlash(rel)+suffixes[0]))
}

// readBundleIn reads the bundle OUT/rel as publish reads it: a regular file reached through real directories (a
// fifo must not block ssf sbom, a symlink must not choose what is read), at most oci.MaxAttestationBytes bytes. A
// missing file is an error wrapping fs.ErrNotExist.
func readBundleIn(out, rel string) ([]byte, error) {
	root, err := os.OpenRoot(out)
	if err != nil {
		return nil, usagef("opening the build output %q: %w", out, err)
	}
	defer root.Close()
	b, err := oci.ReadRegular(root, rel, oci.MaxAttestationBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, usagef("%s: %w", out, err)
	}
	return b, nil
}

// listedByProvenance verifies OUT's provenance bundle for the output and checks that it lists the SBOM bundle
// (its path in OUT and sha256) among its byproducts. It returns false, with no error, for a provenance that lists
// no SBOM bundle at all (a build made before they were listed).
func listedByProvenance(cmd *cobra.Command, out string, sum digest.Digest, trusted root.TrustedMaterial, bundlePath, name string, bundle []byte) (bool, error) {
	provPath := filepath.Join(out, filepath.FromSlash(factory.BundlePath))
	provBundle, err := readBundleIn(out, factory.BundlePath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, usagef("reading the provenance %s: %w", provPath, err)
		}
		return false, err
	}
	res, err := verify.Artifact(cmd.Context(), sum, provBundle, verify.Options{Trusted: trusted})
	if err != nil {
		if errors.Is(err, verify.ErrVerification) {
			return false, fmt.Errorf("%s: %w", provPath, err)
		}
		return false, &usageError{err}
	}
	got := digest.FromBytes(bundle)
	anyListed := false
	for _, b := range res.Provenance.Byproducts {
		if !strings.HasSuffix(b.Name, content.SPDXBundleSuffix) && !strings.HasSuffix(b.Name, content.CycloneDXBundleSuffix) {
			continue
		}
		anyListed = true
		if b.Name == name {
			if b.Digest[string(got.Algorithm())] != got.Encoded() {
				return false, fmt.Errorf("%s: %w: it hashes to %s, but the build's provenance lists sha256:%s for it (an SBOM of another build?)",
					bundlePath, verify.ErrVerification, got, printable(b.Digest["sha256"]))
			}
			return true, nil
		}
	}
	if anyListed {
		return false, fmt.Errorf("%s: %w: the build's provenance does not list it among its SBOM bundles", bundlePath, verify.ErrVerification)
	}
	return false, nil
}

func subjectNames(subjects []provenance.Subject) string {
	parts := make([]string, 0, len(subjects))
	for _, s := range subjects {
		parts = append(parts, strconv.Quote(s.Name))
	}
	return strings.Join(parts, ", ")
}

// terminalSafeJSON rewrites, as JSON escapes, the characters of an indented JSON document a terminal would act
// on or that change how text reads (controls other than the layout's newlines, format characters such as bidi
// overrides, line and paragraph separators); invalid UTF-8 becomes U+FFFD. Outside strings, valid JSON has none
// of them, so the document means the same.
func terminalSafeJSON(doc []byte) []byte {
	var b bytes.Buffer
	for len(doc) > 0 {
		r, n := utf8.DecodeRune(doc)
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\ufffd`)
		case r == '\n' || r == '\t' || r == '\r':
			b.WriteRune(r)
		case unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.Write(doc[:n])
		}
		doc = doc[n:]
	}
	return b.Bytes()
}

// findOutput splits path into the build's output directory (the nearest parent holding the provenance bundle) and
// the output's slash-separated path beneath it.
func findOutput(path string) (out, rel string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", usagef("output %q: %w", path, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return "", "", usagef("output: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", "", usagef("output %q is not a regular file (%s): give a file in the --out directory of ssf build", path, fi.Mode().Type())
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if _, err := os.Lstat(filepath.Join(dir, factory.BundlePath)); err == nil {
			r, err := filepath.Rel(dir, abs)
			if err != nil {
				return "", "", usagef("output %q: %w", path, err)
			}
			// Keep the directory as the user wrote it where possible, for messages.
			return relativeToCwd(dir), filepath.ToSlash(r), nil
		}
		if filepath.Dir(dir) == dir {
			return "", "", usagef("%q is not in the output directory of a build: no parent directory holds %s (give OUT/OUTPUT, with OUT the --out of ssf build)",
				path, factory.BundlePath)
		}
	}
}

func relativeToCwd(dir string) string {
	wd, err := os.Getwd()
	if err != nil {
		return dir
	}
	if r, err := filepath.Rel(wd, dir); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return dir
}

// hashOutput hashes OUT/rel through the same rule publish uses: no symlink on the way, a regular file at the end.
func hashOutput(cmd *cobra.Command, out, rel string) (digest.Digest, error) {
	r, err := os.OpenRoot(out)
	if err != nil {
		return "", usagef("opening the build output %q: %w", out, err)
	}
	defer r.Close()
	f, err := oci.OpenRegular(r, rel)
	if err != nil {
		return "", usagef("reading the output: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := archive.CopyContext(cmd.Context(), h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("hashing the output %q: %w", rel, err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func printSBOMTable(cmd *cobra.Command, rel string, sum digest.Digest, bundlePath string, rows []sbom.Row) error {
	var flagged int
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tTYPE\tPURL\tINGESTED")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		// Names come from the output's own build info, which a step wrote: escape them for the terminal.
		return strings.ReplaceAll(printable(s), "\n", `\n`)
	}
	for _, r := range rows {
		if r.Ingested == "NO" {
			flagged++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(r.Name), dash(r.Version), r.Type, dash(r.PURL), r.Ingested)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	e := cmd.ErrOrStderr()
	fmt.Fprintf(e, "ssf: note: %s %s: %s, SBOM signature verified (%s)\n", rel, sum, plural(len(rows), "component"), bundlePath)
	if flagged > 0 {
		fmt.Fprintf(e, "ssf: warning: %s compiled in but not ingested and verified by the factory (INGESTED NO); --format cyclonedx gives the reasons (ssf:notIngestedReason)\n",
			plural(flagged, "module"))
	}
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
