package admission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// Trust is what an image's bundles are verified with: the factory's provenance key, its trusted root with the
// identity that must sign, or both (a factory that has signed both ways). Digest identifies it in cache keys.
type Trust struct {
	Key         root.TrustedMaterial // nil: key-signed bundles are not accepted
	Certificate root.TrustedMaterial // nil: certificate bundles are not accepted
	Digest      string               // sha256:<hex> over every input the trust was made from
}

// NewTrust makes the trust from a PEM public key (nil for none), a Sigstore trusted root's JSON (nil for none)
// and the identity a certificate must name (required with a trusted root). At least one of the two is needed.
func NewTrust(keyPEM, trustedRoot []byte, id verify.Identity) (*Trust, error) {
	t := &Trust{}
	h := sha256.New()
	put := func(b []byte) { fmt.Fprintf(h, "%d:", len(b)); h.Write(b) }
	if keyPEM != nil {
		pub, err := sign.ParsePublicKeyPEM(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("reading the trusted key: %w", err)
		}
		t.Key = verify.KeyMaterial(pub)
		if err := (verify.Options{Trusted: t.Key}).Validate(); err != nil {
			return nil, err
		}
	}
	put(keyPEM)
	if trustedRoot != nil {
		tr, err := root.NewTrustedRootFromJSON(trustedRoot)
		if err != nil {
			return nil, fmt.Errorf("reading the trusted root: %w", err)
		}
		t.Certificate = verify.CertificateMaterial(tr, id)
		if err := (verify.Options{Trusted: t.Certificate}).Validate(); err != nil {
			return nil, err
		}
	}
	put(trustedRoot)
	for _, s := range []string{id.SAN, id.SANRegexp, id.Issuer, id.IssuerRegexp} {
		put([]byte(s))
	}
	if t.Key == nil && t.Certificate == nil {
		return nil, errors.New("no trust: give a public key, a trusted root with an identity, or both")
	}
	t.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return t, nil
}

// Evidence is what the webhook knows of one image by digest: the verified statements and the provenance verdict.
type Evidence struct {
	Ref       string        // REGISTRY/REPO@sha256:<hex> as verified
	URI       string        // Ref spelled one way (policyURI): ssf.deploy's input.artifact.uri
	Digest    digest.Digest // the image's manifest digest
	Verified  *verify.Evidence
	Err       error // nil when factory provenance verified; else why not (wrapping verify.ErrVerification, or a registry error)
	Requests  int   // registry round trips made to gather it (0 when it came from the cache)
	expiresAt time.Time
}

// evidenceCache holds evidence by (trust digest, image by digest), each entry until its own expiry, at most size
// entries (least recently used go first), and lets concurrent callers for one key share one registry fetch.
type evidenceCache struct {
	entries     *lru.Cache[string, *Evidence]
	ttl, negTTL time.Duration
	now         func() time.Time

	mu       sync.Mutex
	inflight map[string]*flight
}

type flight struct {
	done chan struct{}
	ev   *Evidence
}

func newEvidenceCache(size int, ttl, negTTL time.Duration) *evidenceCache {
	c, err := lru.New[string, *Evidence](size)
	if err != nil {
		panic(err) // size is checked by the options
	}
	return &evidenceCache{entries: c, ttl: ttl, negTTL: negTTL, now: time.Now, inflight: map[string]*flight{}}
}

// get returns the evidence of ref under trust, from the cache, from a fetch under way, or by calling fetch (whose
// context is not the caller's: one caller giving up must not fail the others waiting on the same fetch). cached
// says whether this caller caused no registry request.
func (c *evidenceCache) get(ctx context.Context, trust *Trust, ref name.Digest, fetch func(context.Context) *Evidence, fetchTimeout time.Duration) (ev *Evidence, cached bool, err error) {
	key := trust.Digest + " " + ref.String()
	if ev, ok := c.entries.Get(key); ok && c.now().Before(ev.expiresAt) {
		return ev, true, nil
	}
	c.mu.Lock()
	f, ok := c.inflight[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		c.inflight[key] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
			defer cancel()
			ev := fetch(fctx)
			ttl := c.ttl
			if ev.Err != nil {
				ttl = c.negTTL
			}
			ev.expiresAt = c.now().Add(ttl)
			if ttl > 0 {
				c.entries.Add(key, ev)
			}
			c.mu.Lock()
			delete(c.inflight, key)
			c.mu.Unlock()
			f.ev = ev
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.ev, ok, nil
	case <-ctx.Done():
		return nil, false, fmt.Errorf("waiting for the evidence of %s: %w", ref, context.Cause(ctx))
	}
}

// gather fetches ref's bundles (one referrers listing and one read of the manifest and the blob per bundle; no HEAD,
// since ref is already a digest; the registry's version check comes from the pingCache) and verifies each with the
// trust that matches it: certificate bundles with the trusted root and identity, key bundles with the key. A bundle
// that matches no trust given is skipped.
func gather(ctx context.Context, trust *Trust, ref name.Digest, reg []oci.RegistryOption, base http.RoundTripper) *Evidence {
	d, err := content.ParseFold(ref.DigestStr())
	if err != nil {
		return &Evidence{Ref: ref.String(), Err: fmt.Errorf("%w: %w", verify.ErrBadReference, err)}
	}
	ref = ref.Context().Digest(string(d))
	ev := &Evidence{Ref: ref.String(), URI: policyURI(ref), Digest: d}
	counter := &countingTransport{next: base}
	// FetchEvidence: the SBOMs (and any other bundle referrers) too, read after the provenance candidates, so
	// that ssf.deploy sees them; still one fetch per uncached image.
	att, err := oci.FetchEvidence(ctx, ref.String(), append(slices.Clip(reg), oci.WithTransport(counter))...)
	ev.Requests = int(counter.n.Load())
	if err != nil && !errors.Is(err, oci.ErrNoBundles) {
		ev.Err = fmt.Errorf("fetching the bundles of %s: %w", ref, err)
		return ev
	}
	var keyed, certified []verify.EvidenceBundle
	for _, eb := range verify.ReferrerBundles(att) {
		if verify.HasCertificate(eb.Data) {
			certified = append(certified, eb)
		} else {
			keyed = append(keyed, eb)
		}
	}
	var merged *verify.Evidence
	var provErrs []error
	for _, part := range []struct {
		material root.TrustedMaterial
		bundles  []verify.EvidenceBundle
		what     string
	}{{trust.Key, keyed, "signed by a key, and no key is trusted"}, {trust.Certificate, certified, "signed by a certificate, and no trusted root is given"}} {
		if len(part.bundles) == 0 {
			continue
		}
		if part.material == nil {
			provErrs = append(provErrs, fmt.Errorf("%d bundles are %s", len(part.bundles), part.what))
			continue
		}
		e, err := verify.Collect(ctx, ref.String(), d, part.bundles, verify.Options{Trusted: part.material})
		if err != nil {
			ev.Err = fmt.Errorf("verifying the bundles of %s: %w", ref, err)
			return ev
		}
		if merged == nil {
			merged = e
		} else {
			merged.Statements = append(merged.Statements, e.Statements...)
			merged.Skipped = append(merged.Skipped, e.Skipped...)
			if merged.Provenance == nil {
				merged.Provenance, merged.ProvenanceErr = e.Provenance, e.ProvenanceErr
			}
		}
		if e.ProvenanceErr != nil {
			provErrs = append(provErrs, e.ProvenanceErr)
		}
	}
	if merged == nil {
		merged = &verify.Evidence{URI: ref.String(), Digest: d}
	}
	ev.Verified = merged
	if merged.Provenance != nil {
		return ev
	}
	// Say why each bundle did not do, once: Collect's own summary repeats the reference.
	var reasons []error
	if len(att.Bundles) == 0 {
		reasons = append(reasons, oci.ErrNoBundles)
	}
	for _, s := range merged.Skipped {
		reasons = append(reasons, fmt.Errorf("bundle %s: %w", s.Bundle, s.Reason))
	}
	if len(reasons) == 0 {
		reasons = provErrs
	}
	reasons = append(reasons, att.Skipped...)
	ev.Err = fmt.Errorf("no factory provenance verified: %w", errors.Join(reasons...))
	return ev
}

// countingTransport counts the requests that reach the registry.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(req)
}

// pingTTL is how long a registry's answer to the version check (GET /v2/) is reused.
const pingTTL = time.Minute

// pingCache answers go-containerregistry's version check of a registry (an unauthenticated GET /v2/, sent again
// by every new transport, so by every fetch) from the registry's last answer, for pingTTL: it says only whether
// and how the registry wants clients to authenticate, so reusing it saves one of the four requests of a cold
// review without changing what is verified. Only a 200 or a 401 (with its WWW-Authenticate) is kept.
type pingCache struct {
	next http.RoundTripper
	now  func() time.Time

	mu    sync.Mutex
	pings map[string]cachedPing // by scheme://host
}

type cachedPing struct {
	status int
	header http.Header
	at     time.Time
}

func newPingCache(next http.RoundTripper) *pingCache {
	return &pingCache{next: next, now: time.Now, pings: map[string]cachedPing{}}
}

func (p *pingCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.URL.Path != "/v2/" || req.Header.Get("Authorization") != "" {
		return p.next.RoundTrip(req)
	}
	key := req.URL.Scheme + "://" + req.URL.Host
	p.mu.Lock()
	c, ok := p.pings[key]
	p.mu.Unlock()
	if ok && p.now().Sub(c.at) < pingTTL {
		return &http.Response{StatusCode: c.status, Status: fmt.Sprintf("%d %s", c.status, http.StatusText(c.status)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: c.header.Clone(), Body: http.NoBody, Request: req}, nil
	}
	resp, err := p.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) {
		p.mu.Lock()
		if len(p.pings) > 1024 { // a bound, not an eviction policy: registries an admission webhook sees are few
			clear(p.pings)
		}
		p.pings[key] = cachedPing{status: resp.StatusCode, header: resp.Header.Clone(), at: p.now()}
		p.mu.Unlock()
	}
	return resp, err
}

// policyURI is ref as ssf.deploy's input.artifact.uri: REGISTRY/REPO@sha256:<hex>, spelled one way however the
// container wrote it (oci.CanonicalRepository).
func policyURI(ref name.Digest) string {
	return oci.CanonicalRepository(ref.Context()) + "@" + ref.DigestStr()
}
