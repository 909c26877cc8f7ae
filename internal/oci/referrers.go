package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
)

// Bounds on what is read from a registry when fetching bundles: every read is capped, so a registry (or anyone
// who may push to it) can make verification fail but never make the client hold unbounded data.
const (
	maxBundleSize       = 16 << 20 // one bundle blob
	maxReferrers        = 64       // candidate referrers read
	maxReferrerManifest = 64 << 10 // a bundle referrer's manifest is well under 1 KiB plus annotations
	maxReferrersList    = 8 << 20  // all pages of a referrers list together
	maxReferrerPages    = 16       // pages of a referrers list followed through Link headers

	// MaxOtherReferrers bounds the other bundle referrers (SBOMs, task attestations, VSAs) FetchEvidence reads
	// after the provenance candidates: a build's artifact carries two SBOMs per output and one attestation per
	// task.
	MaxOtherReferrers = 256
	// MaxFetchedBytes bounds the manifests and bundles one FetchEvidence (or FetchBundles) reads together: each
	// bundle may be 16 MiB and 64+256 of them would be 5 GiB; the admission controller fetches several images at
	// once.
	MaxFetchedBytes = 64 << 20
)

// Attached is what a registry holds for one manifest: the bundles referring to it and why others were skipped.
type Attached struct {
	Subject name.Digest // REGISTRY/REPO@sha256:<hex>
	Bundles [][]byte    // every Sigstore bundle v0.3 attached as a referrer
	Skipped []error     // referrers of the bundle artifactType that were not usable, and why
	// Others are the bundles of referrers annotated with another predicate type than SLSA provenance (SBOMs, task
	// attestations, VSAs), read after every provenance candidate; only FetchEvidence reads them.
	Others [][]byte
}

// ErrBadReference is returned by FetchBundles for a reference that is not REGISTRY/REPO@sha256:<hex>.
var ErrBadReference = errors.New("bad registry reference")

// ErrNoBundles is returned by FetchBundles when nothing usable refers to the manifest.
var ErrNoBundles = errors.New("no provenance bundles refer to this manifest")

// FetchBundles lists the referrers of ref (REGISTRY/REPO@sha256:<hex>), through the referrers API (asking the registry
// to filter by artifactType, following Link pages) or else the fallback tag sha256-<hex>, and returns the bundle
// carried by each one listed with artifactType application/vnd.dev.sigstore.bundle.v0.3+json whose manifest has that
// artifactType, ref as its subject and one bundle layer. Referrers of other types are ignored; oversized or malformed
// ones, or ones whose bytes do not match their digests, are skipped and listed in Attached.Skipped. Every read is
// bounded, and all of them together by MaxFetchedBytes. Nothing is verified here but shape and digests: every bundle
// must still be verified against ref's digest.
func FetchBundles(ctx context.Context, ref string, opts ...RegistryOption) (*Attached, error) {
	return fetch(ctx, ref, false, opts)
}

// FetchEvidence is FetchBundles that also reads the other bundle referrers of ref: those annotated
// dev.sigstore.bundle.predicateType with another predicate type than SLSA provenance (the SBOMs and task
// attestations ssf publish attaches, VSAs), into Attached.Others. They are read after every provenance candidate
// and under their own count bound (MaxOtherReferrers), so no number of them can crowd the provenance out; past
// MaxFetchedBytes read in all, the rest are skipped with the reason. Like FetchBundles it checks only shape and
// digests: every bundle must still be verified. ErrNoBundles still means no provenance candidate was usable.
func FetchEvidence(ctx context.Context, ref string, opts ...RegistryOption) (*Attached, error) {
	return fetch(ctx, ref, true, opts)
}

func fetch(ctx context.Context, ref string, others bool, opts []RegistryOption) (*Attached, error) {
	d, err := name.NewDigest(ref, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: want REGISTRY/REPO@sha256:<hex>: %w", ErrBadReference, ref, err)
	}
	c, err := newRawClient(ctx, d.Context(), opts)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", d, err)
	}
	att := &Attached{Subject: d}
	descs, err := c.referrers(ctx, d.DigestStr(), att)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", d, err)
	}
	var candidates, rest []Descriptor
	for _, desc := range descs {
		if desc.Annotations == nil {
			candidates = append(candidates, desc)
		} else {
			desc.Annotations = nil
			rest = append(rest, desc)
		}
	}
	budget := int64(MaxFetchedBytes)
	// read appends the bundles of descs to *into, at most max of them, until the budget runs out; what is not
	// read, and why, goes to att.Skipped.
	read := func(descs []Descriptor, max int, tooMany error, into *[][]byte) {
		for i, desc := range descs {
			if i == max {
				att.Skipped = append(att.Skipped, tooMany)
				return
			}
			b, err := c.bundle(ctx, digest.Digest(d.DigestStr()), desc, &budget)
			if errors.Is(err, errBudget) {
				att.Skipped = append(att.Skipped, fmt.Errorf("referrer %s and the rest: %w", desc.Digest, err))
				return
			}
			if err != nil {
				att.Skipped = append(att.Skipped, fmt.Errorf("referrer %s: %w", desc.Digest, err))
				continue
			}
			*into = append(*into, b)
		}
	}
	read(candidates, maxReferrers, fmt.Errorf("more than %d candidate referrers; the rest were not read", maxReferrers), &att.Bundles)
	if others {
		read(rest, MaxOtherReferrers, fmt.Errorf("more than %d other bundle referrers (SBOMs, attestations); the rest were not read", MaxOtherReferrers), &att.Others)
	}
	if len(att.Bundles) == 0 {
		return att, fmt.Errorf("%s: %w", d, errors.Join(append([]error{ErrNoBundles}, att.Skipped...)...))
	}
	return att, nil
}

// errBudget is a referrer not read because MaxFetchedBytes have been read for the manifest already.
var errBudget = fmt.Errorf("not read: the bundles of one manifest may hold at most %d bytes together", MaxFetchedBytes)

// rawClient makes the few reads FetchBundles needs itself, so that each can be bounded and checked.
type rawClient struct {
	http *http.Client
	base string // scheme://registry/v2/repo
}

func newRawClient(ctx context.Context, repo name.Repository, opts []RegistryOption) (*rawClient, error) {
	c := newRegistryConfig(opts)
	auth, err := c.keychain.Resolve(repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("finding credentials for %s: %w", repo.Registry, err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, c.roundTripper(), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	return &rawClient{http: &http.Client{Transport: rt}, base: repo.Registry.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr()}, nil
}

var errTooLarge = errors.New("too large")

// send sends GET u. The body of an answer other than 200 is drained a little and closed here; the caller reads
// and closes a 200's.
func (c *rawClient) send(ctx context.Context, u, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}
	return resp, nil
}

// get reads the answer to GET u, at most limit bytes of it.
func (c *rawClient) get(ctx context.Context, u, accept string, limit int64) (*http.Response, []byte, error) {
	resp, err := c.send(ctx, u, accept)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) > limit {
		return resp, nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return resp, b, nil
}

// referrers lists the descriptors of subject's referrers that have the bundle artifactType.
func (c *rawClient) referrers(ctx context.Context, subject string, att *Attached) ([]Descriptor, error) {
	u := c.base + "/referrers/" + subject + "?artifactType=" + url.QueryEscape(content.BundleMediaType)
	budget := int64(maxReferrersList)
	var out []Descriptor
	for page := 0; u != ""; page++ {
		if page == maxReferrerPages {
			att.Skipped = append(att.Skipped, fmt.Errorf("referrers list has more than %d pages; the rest were not read", maxReferrerPages))
			break
		}
		resp, body, err := c.getList(ctx, u, &budget, att)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusNotFound && page == 0 {
			// No referrers API: the fallback tag holds the list.
			tag := c.base + "/manifests/" + strings.Replace(subject, ":", "-", 1)
			resp, body, err = c.getList(ctx, tag, &budget, att)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode == http.StatusNotFound {
				return out, nil
			}
			u = ""
		} else {
			u = nextPage(resp, u)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", resp.Request.URL.Redacted(), resp.Status)
		}
		out = append(out, body...)
	}
	return out, nil
}

// getList reads one page of a referrers list, decoding it one descriptor at a time within the remaining budget:
// descriptors of other artifactTypes and every annotation are dropped as they are read, and a page cut short by
// the budget keeps what was read before it.
func (c *rawClient) getList(ctx context.Context, u string, budget *int64, att *Attached) (*http.Response, []Descriptor, error) {
	resp, err := c.send(ctx, u, ocispec.MediaTypeImageIndex)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, nil, err
	}
	defer resp.Body.Close()
	lr := &io.LimitedReader{R: resp.Body, N: *budget}
	descs, err := decodeReferrers(lr)
	*budget = lr.N
	if err != nil {
		if lr.N == 0 {
			err = fmt.Errorf("the referrers list is larger than %d bytes; the rest was not read", maxReferrersList)
		} else {
			err = fmt.Errorf("the referrers list at %s is malformed: %v", resp.Request.URL.Redacted(), err)
		}
		att.Skipped = append(att.Skipped, err)
	}
	return resp, descs, nil
}

// decodeReferrers reads an image index's manifests one at a time, keeping those of the bundle artifactType: a
// provenance candidate (not marked as another predicate than SLSA provenance) without annotations, any other
// with only its dev.sigstore.bundle.predicateType (so fetch can tell them apart). On error it returns what it
// read before.
func decodeReferrers(r io.Reader) ([]Descriptor, error) {
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []Descriptor
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out, err
		}
		if t != "manifests" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return out, err
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return out, fmt.Errorf("manifests is not an array")
		}
		for dec.More() {
			var d Descriptor
			if err := dec.Decode(&d); err != nil {
				return out, err
			}
			if d.ArtifactType != content.BundleMediaType {
				continue
			}
			// A bundle marked as another statement than provenance (an SBOM) is not a candidate: many of them must
			// not crowd the provenance out of the referrers read (fetch reads them last, if at all).
			if pt, ok := d.Annotations[predicateTypeAnnotation]; !ok || pt == provenance.PredicateType {
				d.Annotations = nil
			} else {
				d.Annotations = map[string]string{predicateTypeAnnotation: otherPredicate}
			}
			out = append(out, d)
		}
		if _, err := dec.Token(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// otherPredicate marks, in a descriptor decodeReferrers keeps, a referrer of another predicate type than
// provenance.
const otherPredicate = "other"

// nextPage returns the URL of the Link header's rel="next", resolved against the current page, or "".
func nextPage(resp *http.Response, cur string) string {
	for _, link := range resp.Header.Values("Link") {
		for part := range strings.SplitSeq(link, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			target = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(target), "<"), ">")
			base, err := url.Parse(cur)
			if err != nil {
				return ""
			}
			next, err := base.Parse(target)
			if err != nil || next.Host != base.Host {
				return "" // a registry does not send its client elsewhere
			}
			return next.String()
		}
	}
	return ""
}

// bundle fetches the referrer desc of subject and the bundle it carries, each bounded and checked against its
// digest.
// budget is what may still be read for the manifest: it shrinks by every byte read, and a referrer whose
// manifest or bundle would not fit is not read (errBudget).
func (c *rawClient) bundle(ctx context.Context, subject digest.Digest, desc Descriptor, budget *int64) ([]byte, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest || desc.Size <= 0 || desc.Size > maxReferrerManifest {
		return nil, fmt.Errorf("a %s of %d bytes is not a bundle manifest (at most %d bytes)", desc.MediaType, desc.Size, maxReferrerManifest)
	}
	if desc.Size > *budget {
		return nil, errBudget
	}
	raw, err := c.blob(ctx, "manifests", desc.Digest, ocispec.MediaTypeImageManifest, min(maxReferrerManifest, *budget))
	*budget -= int64(len(raw))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	switch {
	case m.Subject == nil || m.Subject.Digest != subject:
		return nil, errors.New("its subject is another manifest")
	case m.ArtifactType != content.BundleMediaType:
		return nil, fmt.Errorf("artifactType is %q", m.ArtifactType)
	case len(m.Layers) != 1 || m.Layers[0].MediaType != content.BundleMediaType:
		return nil, fmt.Errorf("want one layer of %s", content.BundleMediaType)
	case m.Layers[0].Size > maxBundleSize:
		return nil, fmt.Errorf("bundle of %d bytes is larger than %d", m.Layers[0].Size, maxBundleSize)
	case m.Layers[0].Size > *budget:
		return nil, errBudget
	}
	// The layer's size is the registry's word: the read is bounded by what is left, whatever it says.
	limit := min(maxBundleSize, *budget)
	b, err := c.blob(ctx, "blobs", m.Layers[0].Digest, "*/*", limit)
	*budget -= int64(len(b))
	if errors.Is(err, errTooLarge) {
		if limit < maxBundleSize {
			return nil, errBudget
		}
		return nil, fmt.Errorf("bundle is larger than %d bytes (its manifest says %d)", maxBundleSize, m.Layers[0].Size)
	}
	return b, err
}

// blob reads a manifest or blob by digest, at most limit bytes, and checks that its bytes hash to the digest.
func (c *rawClient) blob(ctx context.Context, kind string, d digest.Digest, accept string, limit int64) ([]byte, error) {
	if _, err := content.Parse(string(d)); err != nil {
		return nil, fmt.Errorf("digest %q is not sha256", d)
	}
	resp, b, err := c.get(ctx, c.base+"/"+kind+"/"+string(d), accept, limit)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", d, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", d, resp.Status)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, fmt.Errorf("%s does not match its digest: its bytes hash to %s", d, got)
	}
	return b, nil
}
