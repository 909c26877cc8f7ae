package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// ErrMismatch is wrapped when an output's bytes, or the manifest made from them, are not what the provenance says:
// publish refuses rather than push something its evidence does not describe.
var ErrMismatch = errors.New("outputs do not match the provenance")

// RegistryOption configures how ssf talks to a registry.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	timeout   time.Duration
}

// WithKeychain sets where registry credentials come from. The default is authn.DefaultKeychain: the Docker
// config file ($DOCKER_CONFIG/config.json, ~/.docker/config.json) and the credential helpers it names, as crane
// and cosign use.
func WithKeychain(k authn.Keychain) RegistryOption { return func(c *registryConfig) { c.keychain = k } }

// WithTransport sets the HTTP transport (tests use it for an in-process registry). Plain HTTP is still refused
// for anything but a loopback host.
func WithTransport(t http.RoundTripper) RegistryOption {
	return func(c *registryConfig) { c.transport = t }
}

func newRegistryConfig(opts []RegistryOption) registryConfig {
	c := registryConfig{keychain: authn.DefaultKeychain, transport: remote.DefaultTransport, timeout: DefaultTimeout}
	for _, o := range opts {
		o(&c)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c
}

// roundTripper is the transport every registry request goes through: plain HTTP only to loopback, and a
// deadline on progress.
func (c registryConfig) roundTripper() http.RoundTripper {
	return loopbackHTTPOnly{progressTransport{next: c.transport, idle: c.timeout}}
}

func remoteOptions(ctx context.Context, opts []RegistryOption) []remote.Option {
	c := newRegistryConfig(opts)
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.roundTripper()),
		remote.WithUserAgent("ssf"),
	}
}

// loopbackHTTPOnly refuses plain HTTP to anything but a loopback address. go-containerregistry falls back to
// HTTP for localhost, loopback and private (RFC 1918) addresses; credentials and unsigned manifests must not
// cross a real network in the clear, so only loopback keeps that fallback.
type loopbackHTTPOnly struct{ next http.RoundTripper }

func (t loopbackHTTPOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	// A redirect (http.Client sets Response to the answer that caused it) may send a client to blob storage on
	// another host, but never from a remote registry to this machine's own services, nor from TLS to plain HTTP:
	// a hostile registry could otherwise use ssf to reach what listens on loopback or a link-local address (a
	// cloud metadata service). Host names are compared as written; a name that resolves there is not caught.
	if prev := req.Response; prev != nil && prev.Request != nil {
		from := prev.Request.URL
		if from.Scheme == "https" && req.URL.Scheme != "https" {
			return nil, refusal(fmt.Sprintf("registry %s redirected to %s: refusing to leave TLS", from.Host, req.URL.Redacted()))
		}
		if isLocal(req.URL.Hostname()) && !isLoopback(from.Hostname()) {
			return nil, refusal(fmt.Sprintf("registry %s redirected to %s: refusing a redirect from a remote registry to a local address", from.Host, req.URL.Redacted()))
		}
	}
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Hostname()) {
		return nil, refusal(fmt.Sprintf("refusing plain HTTP to registry %s: only loopback registries may be reached without TLS", req.URL.Host))
	}
	return t.next.RoundTrip(req)
}

// refusal is a request loopbackHTTPOnly refused: the registry's answer, sent again, is refused again, so it is
// not retried as a network error is (pushClient.do).
type refusal string

func (r refusal) Error() string { return string(r) }

// isLocal reports a host that is this machine or its link: loopback, unspecified (0.0.0.0 reaches this host) or
// link-local.
func isLocal(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if isLoopback(h) || strings.HasSuffix(h, ".localhost") {
		return true
	}
	// An IPv6 address may carry a zone (fe80::1%eth0), which net.ParseIP refuses but the dialer uses: the address
	// without it says whether it is link-local.
	h, _, _ = strings.Cut(h, "%")
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast())
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseTarget parses REGISTRY/REPO[:TAG], where publish pushes to. It returns the repository and the tag ("" for
// none: then the artifact is pushed by digest only). A digest is refused: the digest is what publish computes.
func ParseTarget(s string) (name.Repository, string, error) {
	if strings.Contains(s, "@") {
		return name.Repository{}, "", fmt.Errorf("publish target %q has a digest: give REGISTRY/REPO or REGISTRY/REPO:TAG", s)
	}
	if repo, err := name.NewRepository(s, name.StrictValidation); err == nil {
		return repo, "", nil
	}
	tag, err := name.NewTag(s, name.StrictValidation)
	if err != nil {
		return name.Repository{}, "", fmt.Errorf("publish target %q: want REGISTRY/REPO[:TAG]: %w", s, err)
	}
	return tag.Context(), tag.TagStr(), nil
}

// PublishRequest is one publish of a finished build.
type PublishRequest struct {
	Dir    string          // the build's output directory (OUT of ssf build)
	Bundle []byte          // the build's provenance bundle
	Repo   name.Repository // where to push
	Tag    string          // optional tag; see Tags for what it and the tags made from it name

	// Verify is required: it is called with the artifact manifest's digest, made from the outputs as they are
	// now, and the bundle, before anything is pushed; an error stops the publish. (ssf passes the verify
	// package's verdict; oci does not import it so that the verifier can use this package's registry client.)
	Verify func(ctx context.Context, manifest digest.Digest, bundle []byte) error

	// VerifyAttestation is required when Verify is and the build has SBOMs: it is called for each SBOM bundle beside the outputs
	// (attestations/<output>.spdx.sigstore.json and .cdx.sigstore.json) with a manifest it would be attached to and
	// its predicate type. The bundle must verify for the artifact manifest, or nothing is pushed; it is attached to
	// an image manifest only when it verifies for that image too.
	VerifyAttestation func(ctx context.Context, manifest digest.Digest, predicateType string, bundle []byte) error

	// WithoutVerificationUnsafe publishes without calling Verify: the outputs are still checked against the
	// bundle's statement, but nobody has checked who signed it.
	WithoutVerificationUnsafe bool

	// Admit, when set, is called once every check has passed and before anything is pushed, with the output files
	// as hashed now and every tag the publish will push (the given one and those made from it, see Tags, in the
	// order pushed; output names choose some of them, so a policy must see them all), for ssf's ssf.publish policy
	// gate; an error stops the publish with nothing pushed.
	Admit func(ctx context.Context, files []File, tags []string) error
}

// Published says what went where.
type Published struct {
	Artifact  string            // REGISTRY/REPO@sha256:<hex> of the artifact holding every output file
	Images    map[string]string // output path -> REGISTRY/REPO@sha256:<hex> of the runnable image it holds
	Referrers []string          // REGISTRY/REPO@sha256:<hex> of each bundle referrer pushed (provenance, then SBOMs)
	Tags      []Tagged          // each tag pushed and what it points at (see Tags): the files artifact's first
}

// Tagged is one tag a publish pushed.
type Tagged struct {
	Tag string // REGISTRY/REPO:TAG
	Ref string // REGISTRY/REPO@sha256:<hex> it points at
}

// attestation is a signed SBOM found beside the outputs, with the manifests it is to be attached to.
type attestation struct {
	path, predicateType string
	bundle              []byte
	subjects            []Descriptor
}

// Publish pushes a build's outputs and provenance to a registry.
//
// Every output named by the provenance is hashed again and must match its subject, and the artifact manifest
// made from them (ArtifactManifest) must be the one the provenance names as ArtifactSubject; otherwise nothing
// is pushed and the error wraps ErrMismatch. The artifact goes up byte-identical to that manifest, each output
// that is an OCI image layout tarball goes up as its image (the manifest named by its ImageSubjectPrefix
// subject), and the bundle goes up as an OCI 1.1 referrer of each of them (see ReferrerManifest). Registries
// without the referrers API get the distribution-spec fallback tag sha256-<hex>, written once per subject with
// all its referrers. Everything is pushed by digest, in stages: every blob (at most maxInFlight at once), then
// the manifests that reference them, then the referrer manifests (concurrently: each is independent), then the
// fallback indexes, and the tags (see Tags) last, so a tag never names a manifest whose provenance is not
// attached yet; the first failure stops the publish before any tag. Nothing is signed: each tag names a digest
// the build already signed.
func Publish(ctx context.Context, req PublishRequest, opts ...RegistryOption) (*Published, error) {
	prov, err := statementOf(req.Bundle)
	if err != nil {
		return nil, err
	}
	artifact, images, err := checkOutputs(ctx, req.Dir, prov)
	if err != nil {
		return nil, err
	}
	defer closeImages(images)
	switch {
	case req.Verify != nil && req.WithoutVerificationUnsafe:
		return nil, errors.New("publish: both Verify and WithoutVerificationUnsafe given")
	case req.Verify != nil:
		if err := req.Verify(ctx, artifact.digest, req.Bundle); err != nil {
			return nil, fmt.Errorf("refusing to publish: %w", err)
		}
	case !req.WithoutVerificationUnsafe:
		return nil, errors.New("publish: no Verify given (set WithoutVerificationUnsafe to publish an unverified bundle)")
	}
	artifactDesc := Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: artifact.digest, Size: int64(len(artifact.raw))}
	atts, err := attestations(ctx, req, prov, artifact.files, artifactDesc, images)
	if err != nil {
		return nil, err
	}
	tasks, err := taskAttestations(req.Dir, prov, artifactDesc) // publish_tasks.go
	if err != nil {
		return nil, err
	}
	atts = append(atts, tasks...)
	tags, err := planTags(req.Tag, artifactDesc, artifact.raw, images)
	if err != nil {
		return nil, fmt.Errorf("refusing to publish: %w", err)
	}
	if req.Admit != nil {
		tagNames := make([]string, 0, len(tags))
		for _, t := range tags {
			tagNames = append(tagNames, t.tag)
		}
		if err := req.Admit(ctx, append([]File(nil), artifact.files...), tagNames); err != nil {
			return nil, fmt.Errorf("refusing to publish: %w", err)
		}
	}

	ropts := remoteOptions(ctx, opts)
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, err
	}
	repo := req.Repo
	pub := &Published{Images: map[string]string{}}

	root, err := os.OpenRoot(req.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	// Every blob first, at most maxInFlight at once: the empty config, each file, the provenance bundle and each
	// SBOM bundle. Each is uploaded once however many outputs share its bytes.
	blobs := newGroup(ctx, maxInFlight)
	seen := map[digest.Digest]bool{}
	upload := func(d digest.Digest, what string, l v1.Layer) {
		if seen[d] {
			return
		}
		seen[d] = true
		blobs.do(func(ctx context.Context) error {
			if err := pusher.Upload(ctx, repo, l); err != nil {
				return fmt.Errorf("pushing %s to %s: %w", what, repo, err)
			}
			return nil
		})
	}
	upload(digest.FromBytes(emptyJSON), "the empty config", static.NewLayer(emptyJSON, ocispec.MediaTypeEmptyJSON))
	for _, f := range artifact.files {
		upload(f.Digest, fmt.Sprintf("output %q", f.Path), &fileLayer{root: root, file: f})
	}
	upload(digest.FromBytes(req.Bundle), "the provenance bundle", static.NewLayer(req.Bundle, content.BundleMediaType))
	for _, a := range atts {
		upload(digest.FromBytes(a.bundle), a.path, static.NewLayer(a.bundle, content.BundleMediaType))
	}
	if err := blobs.wait(); err != nil {
		return nil, err
	}

	// The artifact manifest, once its files are there.
	artifactRef := repo.Digest(string(artifactDesc.Digest))
	if err := pusher.Push(ctx, artifactRef, rawManifest{artifact.raw, ocispec.MediaTypeImageManifest}); err != nil {
		return nil, fmt.Errorf("pushing the artifact manifest to %s: %w", artifactRef, err)
	}
	pub.Artifact = artifactRef.String()

	// Each image output, by digest.
	subjects := []Descriptor{artifactDesc}
	for _, img := range images {
		if err := pushImage(ctx, pusher, repo, img); err != nil {
			return nil, err
		}
		subjects = append(subjects, img.desc)
		pub.Images[img.path] = repo.Digest(string(img.desc.Digest)).String()
	}

	// The bundles, as referrers of the manifests they are about: the provenance of each, each SBOM of those it
	// verified for. Their subjects and blobs are all there now.
	var refs []referrerPlan
	for _, s := range subjects {
		r, err := newReferrerPlan("the provenance referrer", s, req.Bundle, provenance.PredicateType, prov.FinishedOn)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	for _, a := range atts {
		for _, s := range a.subjects {
			r, err := newReferrerPlan("the referrer of "+a.path, s, a.bundle, a.predicateType, prov.FinishedOn)
			if err != nil {
				return nil, err
			}
			refs = append(refs, r)
		}
	}
	client, err := newPushClient(ctx, repo, opts)
	if err != nil {
		return nil, err
	}
	if err := client.pushReferrers(ctx, refs); err != nil {
		return nil, err
	}
	for _, r := range refs {
		pub.Referrers = append(pub.Referrers, repo.Digest(string(r.desc.Digest)).String())
	}
	// The tags, last: a tag points at a manifest only once everything is there, its provenance attached.
	for _, t := range tags {
		ref := repo.Tag(t.tag)
		if err := pusher.Push(ctx, ref, rawManifest{t.raw, string(t.desc.MediaType)}); err != nil {
			return nil, fmt.Errorf("tagging %s as %s: %w", t.desc.Digest, ref, err)
		}
		pub.Tags = append(pub.Tags, Tagged{Tag: ref.String(), Ref: repo.Digest(string(t.desc.Digest)).String()})
	}
	return pub, nil
}

// FilesTagSuffix is appended to the --to tag to name the files artifact when the outputs hold images. Image tags
// add "-<name>", so TAG.files is never one of them, and a tag ending in ".files" never has cosign's fallback
// form sha256-<hex>.
const FilesTagSuffix = ".files"

// Tags works out the tags a publish to tag pushes, given the paths of the outputs that hold images:
//
//   - no image: tag names the files artifact (files holds tag, images is empty);
//   - every image output also gets tag-<name>, where name is its path without a trailing ".tar", each character
//     outside [A-Za-z0-9_.-] replaced by "-" (images maps the output path to it);
//   - exactly one image: tag names that image, and the files artifact is tag.files;
//   - several images: tag and tag.files name the files artifact (nothing is singled out to run).
//
// An empty tag gives no tags. Two outputs whose names come out the same, a tag longer than 128 characters, or a
// tag of cosign's fallback form (sha256-<hex>...: another manifest's signatures) is an error: nothing is pushed.
func Tags(tag string, imagePaths []string) (files []string, images map[string]string, err error) {
	images = map[string]string{}
	if tag == "" {
		return nil, images, nil
	}
	if err := checkNotFallbackTag(tag, "--to"); err != nil {
		return nil, nil, err
	}
	if len(imagePaths) == 0 {
		return []string{tag}, images, nil
	}
	files = []string{tag + FilesTagSuffix}
	if len(imagePaths) > 1 {
		files = append([]string{tag}, files...)
	}
	owner := map[string]string{}
	for _, p := range imagePaths {
		t := tag + "-" + sanitiseTag(strings.TrimSuffix(p, ".tar"))
		if len(t) > maxTagLen {
			return nil, nil, fmt.Errorf("%w: tag %q for image output %q is longer than %d characters: give a shorter tag in --to", ErrTagScheme, t, p, maxTagLen)
		}
		if err := checkNotFallbackTag(t, fmt.Sprintf("image output %q", p)); err != nil {
			return nil, nil, err
		}
		if o, dup := owner[t]; dup {
			return nil, nil, fmt.Errorf("%w: image outputs %q and %q would both be tagged %q: rename one of them", ErrTagScheme, o, p, t)
		}
		owner[t] = p
		images[p] = t
	}
	if len(tag+FilesTagSuffix) > maxTagLen {
		return nil, nil, fmt.Errorf("%w: tag %q is longer than %d characters: give a shorter tag in --to", ErrTagScheme, tag+FilesTagSuffix, maxTagLen)
	}
	return files, images, nil
}

// checkNotFallbackTag refuses a tag that starts with sha256-<64 hex digits>: cosign's fallback referrers tag
// (sha256-HEX) and its legacy signature tags (sha256-HEX.sig, .att, .sbom) have that form, and a publish that
// pushed one would replace another manifest's signatures on a registry without the referrers API.
func checkNotFallbackTag(tag, what string) error {
	hex, ok := strings.CutPrefix(strings.ToLower(tag), "sha256-")
	if !ok || len(hex) < 64 || strings.Trim(hex[:64], "0123456789abcdef") != "" {
		return nil
	}
	return fmt.Errorf("%w: tag %q for %s has the form of cosign's fallback tag for a digest (sha256-HEX), which "+
		"holds that manifest's signatures: give another tag in --to", ErrTagScheme, tag, what)
}

// ErrTagScheme is wrapped when the tags a publish would push (see Tags) cannot be made: a tag too long, or two
// image outputs that would get the same tag. Nothing has been pushed; a shorter tag or a renamed output fixes it.
var ErrTagScheme = errors.New("cannot tag the outputs")

// maxTagLen is the distribution spec's limit on a tag.
const maxTagLen = 128

func sanitiseTag(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// tagPlan is one tag to push: the manifest it points at, pushed again byte for byte under the tag.
type tagPlan struct {
	tag  string
	desc Descriptor
	raw  []byte
}

// planTags turns Tags into what to push.
func planTags(tag string, artifact Descriptor, artifactRaw []byte, images []imagePlan) ([]tagPlan, error) {
	if tag == "" {
		return nil, nil
	}
	paths := make([]string, 0, len(images))
	for _, img := range images {
		paths = append(paths, img.path)
	}
	files, imageTags, err := Tags(tag, paths)
	if err != nil {
		return nil, err
	}
	var out []tagPlan
	for _, t := range files {
		out = append(out, tagPlan{tag: t, desc: artifact, raw: artifactRaw})
	}
	for _, img := range images {
		raw, ok := img.tar.raw[img.desc.Digest]
		if !ok {
			return nil, fmt.Errorf("image %q: manifest %s was not checked", img.path, img.desc.Digest)
		}
		ts := []string{imageTags[img.path]}
		if len(images) == 1 {
			ts = append([]string{tag}, ts...)
		}
		for _, t := range ts {
			out = append(out, tagPlan{tag: t, desc: img.desc, raw: raw})
		}
	}
	return out, nil
}

// MaxAttestationBytes bounds one SBOM bundle read from a build's output directory (an SBOM of a project with many
// thousand packages runs to megabytes).
const MaxAttestationBytes = 64 << 20

// ReadRegular reads the regular file rel beneath r (see OpenRegular: no symlink on the way, a fifo or device is
// refused without blocking), at most limit bytes. A missing file is an error wrapping fs.ErrNotExist.
func ReadRegular(r *os.Root, rel string, limit int64) ([]byte, error) {
	f, err := OpenRegular(r, rel)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", rel, limit)
	}
	return b, nil
}

// attestations reads the SBOM bundles beside the outputs and works out which manifests each goes to: each must
// verify for the output it is named after and for the artifact (else nothing is published), and goes to an image
// only if it verifies for it too.
//
// A build lists its SBOM bundles among the provenance's byproducts (by name and digest). When it does, exactly
// those bytes must be there: a bundle removed, or replaced by another the factory signed for the same output (an
// earlier build's), stops the publish. A provenance listing none (a build made before SBOMs were recorded) leaves
// every SBOM optional.
func attestations(ctx context.Context, req PublishRequest, prov *provenance.Provenance, files []File, artifact Descriptor, images []imagePlan) ([]attestation, error) {
	root, err := os.OpenRoot(req.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	listed := map[string]provenance.Digest{}
	for _, b := range prov.Byproducts {
		if strings.HasPrefix(b.Name, "attestations/") &&
			(strings.HasSuffix(b.Name, content.SPDXBundleSuffix) || strings.HasSuffix(b.Name, content.CycloneDXBundleSuffix)) {
			listed[b.Name] = b.Digest
		}
	}
	var out []attestation
	for _, f := range files {
		for _, kind := range []struct{ suffix, predicateType string }{
			{content.SPDXBundleSuffix, content.SPDXPredicateType},
			{content.CycloneDXBundleSuffix, content.CycloneDXPredicateType},
		} {
			rel := "attestations/" + f.Path + kind.suffix
			want, isListed := listed[rel]
			b, err := ReadRegular(root, rel, MaxAttestationBytes)
			if errors.Is(err, fs.ErrNotExist) {
				if isListed {
					return nil, fmt.Errorf("refusing to publish: %s is missing: the provenance lists it (with %s)", rel, want)
				}
				continue // not listed: a build made before SBOMs were recorded publishes what there is
			}
			if err != nil {
				return nil, err
			}
			if len(listed) > 0 {
				got := digest.FromBytes(b)
				if !isListed || want[string(got.Algorithm())] != got.Encoded() {
					return nil, fmt.Errorf("refusing to publish: %s hashes to %s, not to what the provenance lists for it (%s)", rel, got, want)
				}
			}
			a := attestation{path: rel, predicateType: kind.predicateType, bundle: b, subjects: []Descriptor{artifact}}
			if req.Verify != nil && req.VerifyAttestation == nil {
				return nil, fmt.Errorf("publish: %s found but no VerifyAttestation given", rel)
			}
			if req.VerifyAttestation != nil {
				// Every SBOM of the build names the artifact, so that check alone would take one output's SBOM
				// copied over another's (hiding the SBOM that flags a module): it must be about this output too.
				if err := req.VerifyAttestation(ctx, f.Digest, kind.predicateType, b); err != nil {
					return nil, fmt.Errorf("refusing to publish: %s is not an SBOM of output %q: %w", rel, f.Path, err)
				}
				if err := req.VerifyAttestation(ctx, artifact.Digest, kind.predicateType, b); err != nil {
					return nil, fmt.Errorf("refusing to publish: %s: %w", rel, err)
				}
				for _, img := range images {
					// A build's SBOM names its own output's image only; checking it against every image would cost
					// a build of N images N² signature checks.
					if img.path == f.Path && req.VerifyAttestation(ctx, img.desc.Digest, kind.predicateType, b) == nil {
						a.subjects = append(a.subjects, img.desc)
					}
				}
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// predicateTypeAnnotation names a bundle referrer's statement's predicate type, in cosign's layout.
const predicateTypeAnnotation = "dev.sigstore.bundle.predicateType"

// ReferrerManifest returns the manifest that attaches a Sigstore bundle to subject in the layout cosign reads:
// artifactType and the one layer's media type application/vnd.dev.sigstore.bundle.v0.3+json, the empty config,
// and annotations dev.sigstore.bundle.content (dsse-envelope), dev.sigstore.bundle.predicateType (the statement's,
// e.g. SLSA provenance v1) and org.opencontainers.image.created (the build's finishedOn, so the manifest is the
// same on every publish).
func ReferrerManifest(subject Descriptor, bundleJSON []byte, predicateType string, created time.Time) ([]byte, error) {
	if created.IsZero() {
		return nil, errors.New("referrer manifest: no creation time")
	}
	m := manifest{
		SchemaVersion: 2, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: content.BundleMediaType,
		Config:  emptyDescriptor(),
		Layers:  []Descriptor{{MediaType: content.BundleMediaType, Digest: digest.FromBytes(bundleJSON), Size: int64(len(bundleJSON))}},
		Subject: &Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations: map[string]string{
			"dev.sigstore.bundle.content": "dsse-envelope",
			predicateTypeAnnotation:       predicateType,
			ocispec.AnnotationCreated:     created.UTC().Format(time.RFC3339),
		},
	}
	return json.Marshal(m)
}

// statementOf reads the provenance statement in a bundle without checking its signature (Publish.Verify does).
func statementOf(bundleJSON []byte) (*provenance.Provenance, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, fmt.Errorf("reading the provenance bundle: %w", err)
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, errors.New("reading the provenance bundle: its content is not a DSSE envelope")
	}
	prov, err := provenance.Parse(env.GetPayload())
	if err != nil {
		return nil, fmt.Errorf("reading the provenance bundle: %w", err)
	}
	return prov, nil
}

type artifactPlan struct {
	files  []File
	raw    []byte
	digest digest.Digest
}

type imagePlan struct {
	path string
	desc Descriptor
	tar  *ImageTar // checked, reading from file
	file *os.File
}

func closeImages(images []imagePlan) {
	for _, img := range images {
		img.file.Close()
	}
}

// checkOutputs hashes every output the provenance names and rebuilds the artifact manifest; any difference from
// the provenance is ErrMismatch.
func checkOutputs(ctx context.Context, dir string, prov *provenance.Provenance) (*artifactPlan, []imagePlan, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening build output %q: %w", dir, err)
	}
	defer root.Close()
	var (
		files     []File
		artifact  digest.Digest
		imageWant = map[string]digest.Digest{}
	)
	for _, s := range prov.Subjects {
		switch {
		case s.Name == ArtifactSubject:
			artifact = s.Digest
		case strings.HasPrefix(s.Name, ImageSubjectPrefix):
			imageWant[strings.TrimPrefix(s.Name, ImageSubjectPrefix)] = s.Digest
		case strings.Contains(s.Name, "://"):
			return nil, nil, fmt.Errorf("%w: unknown subject %q", ErrMismatch, s.Name)
		default:
			f, err := hashRegular(ctx, root, s.Name)
			if err != nil {
				return nil, nil, fmt.Errorf("refusing to publish: %w", err)
			}
			if f.Digest != s.Digest {
				return nil, nil, fmt.Errorf("%w: output %q has %s, the provenance says %s", ErrMismatch, s.Name, f.Digest, s.Digest)
			}
			files = append(files, f)
		}
	}
	if artifact == "" {
		return nil, nil, fmt.Errorf("%w: the provenance has no %q subject (the build was made by an ssf without publishing; rebuild it)", ErrMismatch, ArtifactSubject)
	}
	raw, err := ArtifactManifest(files)
	if err != nil {
		return nil, nil, err
	}
	if got := digest.FromBytes(raw); got != artifact {
		return nil, nil, fmt.Errorf("%w: the artifact manifest of the outputs is %s, the provenance says %s", ErrMismatch, got, artifact)
	}
	var images []imagePlan
	for _, f := range files {
		want, ok := imageWant[f.Path]
		if !ok {
			continue
		}
		delete(imageWant, f.Path)
		it, file, err := imageInRoot(ctx, root, f.Path)
		if err != nil {
			closeImages(images)
			return nil, nil, fmt.Errorf("refusing to publish: %w", err)
		}
		if it == nil || it.Image.Digest != want {
			if file != nil {
				file.Close()
			}
			closeImages(images)
			return nil, nil, fmt.Errorf("%w: output %q does not hold image %s", ErrMismatch, f.Path, want)
		}
		images = append(images, imagePlan{path: f.Path, desc: it.Image, tar: it, file: file})
	}
	for p := range imageWant {
		closeImages(images)
		return nil, nil, fmt.Errorf("%w: image subject %q names no output", ErrMismatch, ImageSubjectPrefix+p)
	}
	return &artifactPlan{files: files, raw: raw, digest: artifact}, images, nil
}

// pushImage pushes an image output, by digest, byte for byte, streaming each blob from the tarball that
// checkOutputs read and checked: nothing is unpacked.
func pushImage(ctx context.Context, pusher *remote.Pusher, repo name.Repository, img imagePlan) error {
	t, err := img.tar.taggable(img.desc)
	if err != nil {
		return fmt.Errorf("reading image %q: %w", img.path, err)
	}
	ref := repo.Digest(string(img.desc.Digest))
	if err := pusher.Push(ctx, ref, t); err != nil {
		return fmt.Errorf("pushing image %q to %s: %w", img.path, ref, err)
	}
	return nil
}

// rawManifest is a manifest pushed exactly as given.
type rawManifest struct {
	raw       []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }

// fileLayer is an output file as a blob, read when it is pushed. The registry checks the digest of what arrives,
// so a file changed after it was checked is rejected there.
type fileLayer struct {
	root *os.Root
	file File
}

var _ v1.Layer = (*fileLayer)(nil)

func (l *fileLayer) Digest() (v1.Hash, error) {
	return v1.Hash{Algorithm: string(l.file.Digest.Algorithm()), Hex: l.file.Digest.Encoded()}, nil
}
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.Digest() }
func (l *fileLayer) Size() (int64, error)     { return l.file.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) {
	return content.FileMediaType, nil
}
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return OpenRegular(l.root, l.file.Path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
