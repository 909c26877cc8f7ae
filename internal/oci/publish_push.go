package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxInFlight bounds the uploads one publish has going at once: enough to hide a registry's per-request latency
// (an fsync per blob and manifest in ssf's own), few enough not to flood it.
const maxInFlight = 8

// group runs tasks with at most n in flight. The first error cancels the tasks still running or waiting and is
// the one wait returns, so a failure names the file or referrer it was about, not a cancellation.
type group struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

func newGroup(ctx context.Context, n int) *group {
	ctx, cancel := context.WithCancelCause(ctx)
	return &group{ctx: ctx, cancel: cancel, sem: make(chan struct{}, n)}
}

// do starts f once a slot is free; after a failure (or the caller's cancellation) it starts nothing more.
func (g *group) do(f func(ctx context.Context) error) {
	select {
	case g.sem <- struct{}{}:
	case <-g.ctx.Done():
		return
	}
	if g.ctx.Err() != nil {
		<-g.sem
		return
	}
	g.wg.Add(1)
	go func() {
		defer func() { <-g.sem; g.wg.Done() }()
		if err := f(g.ctx); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
				g.cancel(err)
			}
			g.mu.Unlock()
		}
	}()
}

// wait waits for every task started and returns the first error, or the caller's cancellation.
func (g *group) wait() error {
	g.wg.Wait()
	err := g.err
	if err == nil {
		err = context.Cause(g.ctx)
	}
	g.cancel(nil)
	return err
}

// referrerPlan is one bundle referrer to push: its manifest, the subject it attaches to, and what it is for
// errors ("the provenance referrer", "the referrer of attestations/x.spdx.sigstore.json").
type referrerPlan struct {
	what    string
	subject Descriptor
	raw     []byte
	desc    Descriptor // of raw, as the fallback index lists it
}

func newReferrerPlan(what string, subject Descriptor, bundle []byte, predicateType string, created time.Time) (referrerPlan, error) {
	raw, err := ReferrerManifest(subject, bundle, predicateType, created)
	if err != nil {
		return referrerPlan{}, fmt.Errorf("%s of %s: %w", what, subject.Digest, err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return referrerPlan{}, err
	}
	return referrerPlan{what: what, subject: subject, raw: raw, desc: Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: m.ArtifactType,
		Digest: digest.FromBytes(raw), Size: int64(len(raw)), Annotations: m.Annotations,
	}}, nil
}

// pushClient makes the manifest requests whose answers go-containerregistry's pusher does not show: whether the
// registry took a referrer's subject (the OCI-Subject header), and the fallback index, written once per subject.
type pushClient struct {
	http *http.Client
	base string // scheme://registry/v2/repo
	repo name.Repository
}

func newPushClient(ctx context.Context, repo name.Repository, opts []RegistryOption) (*pushClient, error) {
	c := newRegistryConfig(opts)
	auth, err := c.keychain.Resolve(repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("finding credentials for %s: %w", repo.Registry, err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, transport.NewUserAgent(c.roundTripper(), "ssf"),
		[]string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", repo.Registry, err)
	}
	return &pushClient{http: &http.Client{Transport: rt}, base: repo.Registry.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr(), repo: repo}, nil
}

// retryAfter is how long do waits before each retry of a request that failed as a busy or flaky registry does
// (go-containerregistry's pusher, which the rest of a publish goes through, retries as often).
var retryAfter = []time.Duration{time.Second, 3 * time.Second}

// do sends a request and returns the answer with its body read (at most limit bytes) and closed. A network error
// or a 408, 429, 500, 502, 503 or 504 is retried after retryAfter; every request here is idempotent.
func (c *pushClient) do(ctx context.Context, method, u, contentType, accept string, body []byte, limit int64) (*http.Response, []byte, error) {
	for i := 0; ; i++ {
		resp, b, err := c.once(ctx, method, u, contentType, accept, body, limit)
		var refused refusal
		transient := err != nil && ctx.Err() == nil && !errors.Is(err, errTooLarge) && !errors.As(err, &refused)
		if err == nil {
			switch resp.StatusCode {
			case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
				http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				transient = true
			}
		}
		if !transient || i == len(retryAfter) {
			return resp, b, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		case <-time.After(retryAfter[i]):
		}
	}
}

func (c *pushClient) once(ctx context.Context, method, u, contentType, accept string, body []byte, limit int64) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) > limit {
		return nil, nil, fmt.Errorf("%s %s: %w: more than %d bytes", method, u, errTooLarge, limit)
	}
	return resp, b, nil
}

// statusError is the registry's answer as an error, with the error body the registry sent.
func statusError(resp *http.Response, body []byte, ok ...int) error {
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return transport.CheckError(resp, ok...)
}

// pushReferrer puts one referrer manifest unless the registry has it.
func (c *pushClient) pushReferrer(ctx context.Context, r referrerPlan) error {
	u := c.base + "/manifests/" + string(r.desc.Digest)
	resp, _, err := c.do(ctx, http.MethodHead, u, "", ocispec.MediaTypeImageManifest, nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") == string(r.desc.Digest) {
		return nil
	}
	resp, body, err := c.do(ctx, http.MethodPut, u, ocispec.MediaTypeImageManifest, "", r.raw, 64<<10)
	if err != nil {
		return err
	}
	return statusError(resp, body, http.StatusOK, http.StatusCreated, http.StatusAccepted)
}

// hasReferrersAPI asks the registry for subject's referrers: a registry with the API answers 200, one without
// 404 (or 400), as go-containerregistry and cosign decide.
func (c *pushClient) hasReferrersAPI(ctx context.Context, subject digest.Digest) (bool, error) {
	resp, body, err := c.do(ctx, http.MethodGet, c.base+"/referrers/"+string(subject), "", ocispec.MediaTypeImageIndex, nil, maxReferrersList)
	if err != nil {
		return false, fmt.Errorf("asking %s for the referrers of %s: %w", c.repo, subject, err)
	}
	if err := statusError(resp, body, http.StatusOK, http.StatusNotFound, http.StatusBadRequest); err != nil {
		return false, fmt.Errorf("asking %s for the referrers of %s: %w", c.repo, subject, err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, nil
	}
	// A 200 must be an image index: a front end answering every path with a page has no API, and ssf verify,
	// which reads the list the same way, would not find the referrers in the fallback tag either.
	var idx fallbackIndex
	if err := json.Unmarshal(body, &idx); err != nil || idx.SchemaVersion != 2 || (idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex) {
		return false, fmt.Errorf("asking %s for the referrers of %s: the answer (200, %s) is not an OCI image index: the registry (or what is in front of it) does not serve the OCI referrers API correctly", c.repo, subject, resp.Header.Get("Content-Type"))
	}
	return true, nil
}

// fallbackIndex is the distribution spec's referrers tag schema: an OCI index tagged sha256-<hex> of the subject.
type fallbackIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// fallbackEntry is one entry of a fallback index as it was read (or as ssf writes its own) and its digest.
type fallbackEntry struct {
	digest digest.Digest
	raw    json.RawMessage
}

// maxFallbackIndex bounds the fallback index read back (2,000 referrers take about 1 MiB).
const maxFallbackIndex = 32 << 20

// addToFallback adds refs (all of one subject, already pushed) to the subject's fallback index in one write: read
// it, keep every entry it has, add those missing, write it back if anything was. One read-modify-write per
// subject rather than per referrer (go-containerregistry's pusher rewrites the whole index for each).
func (c *pushClient) addToFallback(ctx context.Context, subject digest.Digest, refs []Descriptor) error {
	tag := subject.Algorithm().String() + "-" + subject.Encoded()
	u := c.base + "/manifests/" + tag
	resp, body, err := c.do(ctx, http.MethodGet, u, "", ocispec.MediaTypeImageIndex, nil, maxFallbackIndex)
	if err != nil {
		return fmt.Errorf("reading the referrers tag %s:%s: %w", c.repo, tag, err)
	}
	if err := statusError(resp, body, http.StatusOK, http.StatusNotFound); err != nil {
		return fmt.Errorf("reading the referrers tag %s:%s: %w", c.repo, tag, err)
	}
	// The index is rewritten from what was read, not re-encoded from ssf's own types: an entry another client
	// wrote (with a platform, urls or data ssf's Descriptor has no field for) and the index's own fields
	// (annotations, ...) are written back byte for byte, so adding a referrer never drops what the index said.
	fields := map[string]json.RawMessage{}
	var entries []fallbackEntry
	if resp.StatusCode == http.StatusOK {
		var idx fallbackIndex
		if err := json.Unmarshal(body, &idx); err != nil {
			return fmt.Errorf("reading the referrers tag %s:%s: %w", c.repo, tag, err)
		}
		if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
			return fmt.Errorf("the referrers tag %s:%s is not an OCI image index (schemaVersion %d, mediaType %q): refusing to replace it", c.repo, tag, idx.SchemaVersion, idx.MediaType)
		}
		var raw struct {
			Manifests []json.RawMessage `json:"manifests"`
		}
		if err := json.Unmarshal(body, &fields); err != nil {
			return fmt.Errorf("reading the referrers tag %s:%s: %w", c.repo, tag, err)
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			return fmt.Errorf("reading the referrers tag %s:%s: %w", c.repo, tag, err)
		}
		for i, m := range raw.Manifests {
			entries = append(entries, fallbackEntry{digest: idx.Manifests[i].Digest, raw: m})
		}
	} else {
		fields["schemaVersion"], _ = json.Marshal(2)
		fields["mediaType"], _ = json.Marshal(ocispec.MediaTypeImageIndex)
	}
	have := map[digest.Digest]bool{}
	for _, e := range entries {
		have[e.digest] = true
	}
	added := false
	for _, d := range refs {
		if !have[d.Digest] {
			have[d.Digest] = true
			raw, err := json.Marshal(d)
			if err != nil {
				return err
			}
			entries = append(entries, fallbackEntry{digest: d.Digest, raw: raw})
			added = true
		}
	}
	if !added {
		return nil
	}
	// Sorted as go-containerregistry writes it, so the same referrers give the same index.
	slices.SortStableFunc(entries, func(a, b fallbackEntry) int { return strings.Compare(string(a.digest), string(b.digest)) })
	manifests := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		manifests[i] = e.raw
	}
	if fields["manifests"], err = json.Marshal(manifests); err != nil {
		return err
	}
	raw, err := json.Marshal(fields) // a map: keys sorted, so the same index gives the same bytes
	if err != nil {
		return err
	}
	// ssf verify reads at most maxReferrersList bytes of a referrers list (referrers.go): an index past that
	// could hide the provenance beyond what verify reads, so the publish fails here, before any tag is pushed,
	// rather than publish what cannot be verified.
	if len(raw) > maxReferrersList {
		return fmt.Errorf("the referrers tag %s:%s would list %d referrers in %d bytes, more than the %d bytes ssf verify reads: publish to a registry with the OCI referrers API, or to a repository without so many referrers of %s", c.repo, tag, len(entries), len(raw), maxReferrersList, subject)
	}
	resp, body, err = c.do(ctx, http.MethodPut, u, ocispec.MediaTypeImageIndex, "", raw, 64<<10)
	if err == nil {
		err = statusError(resp, body, http.StatusOK, http.StatusCreated, http.StatusAccepted)
	}
	if err != nil {
		return fmt.Errorf("writing the referrers tag %s:%s with %d referrers: %w", c.repo, tag, len(entries), err)
	}
	return nil
}

// pushReferrers pushes every referrer manifest (their blobs are up), at most maxInFlight at once: each is a
// manifest of its own, independent of the others. A registry with the referrers API keeps each subject's list
// itself. For one without, the fallback index of each subject is then written once with all its referrers; it
// names only manifests already there, and nothing concurrent writes the same tag within this publish.
func (c *pushClient) pushReferrers(ctx context.Context, refs []referrerPlan) error {
	g := newGroup(ctx, maxInFlight)
	for _, r := range refs {
		g.do(func(ctx context.Context) error {
			if err := c.pushReferrer(ctx, r); err != nil {
				return fmt.Errorf("pushing %s of %s to %s: %w", r.what, r.subject.Digest, c.repo, err)
			}
			return nil
		})
	}
	if err := g.wait(); err != nil {
		return err
	}
	if len(refs) == 0 {
		return nil
	}
	// The API is asked for even when every put was answered with OCI-Subject: that header alone (a proxy may
	// pass it on, a registry may send it without keeping any list) is not taken as the list being kept, since a
	// registry without the API would then hold referrers no client finds. One request per publish.
	api, err := c.hasReferrersAPI(ctx, refs[0].subject.Digest)
	if err != nil {
		return err
	}
	if api {
		return nil
	}
	bySubject := map[digest.Digest][]Descriptor{}
	var order []digest.Digest
	for _, r := range refs {
		if _, ok := bySubject[r.subject.Digest]; !ok {
			order = append(order, r.subject.Digest)
		}
		bySubject[r.subject.Digest] = append(bySubject[r.subject.Digest], r.desc)
	}
	g = newGroup(ctx, maxInFlight)
	for _, s := range order {
		g.do(func(ctx context.Context) error { return c.addToFallback(ctx, s, bySubject[s]) })
	}
	return g.wait()
}
