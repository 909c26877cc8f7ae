package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/policy"
)

// Mode is how a namespace opted in: enforce denies, warn admits with warnings. The webhook configuration calls
// /mutate/enforce and /validate/enforce for namespaces labelled ssf.dev/admission=enforce, and /mutate/warn and
// /validate/warn for =warn: the review does not carry the namespace's labels, reading them would need cluster
// permissions, and a webhook URL may not carry a query. /mutate and /validate alone mean enforce.
type Mode string

// The modes, and the namespace label that selects them.
const (
	Enforce Mode = "enforce"
	Warn    Mode = "warn"

	NamespaceLabel = "ssf.dev/admission"
)

// Defaults of the options.
const (
	DefaultCacheSize      = 10000
	DefaultTTL            = 10 * time.Minute
	DefaultNegativeTTL    = 30 * time.Second
	DefaultRequestTimeout = 8 * time.Second // under the webhook configuration's timeoutSeconds (10)
	maxReasonBytes        = 1024
	maxMessageBytes       = 16 << 10
	maxParallelImages     = 8

	// smallReview is the size under which a review is read without waiting for a slot: Pods and workloads are a
	// few KiB. DefaultLargeReviews bounds the reviews above it read at once; reading and decoding one takes about
	// four times its size in memory (30 MiB for one of MaxReviewBytes), so ten at once would exceed the 256 MiB
	// deploy/admission.yaml gives the webhook.
	smallReview         = 64 << 10
	DefaultLargeReviews = 2
)

// Option configures New.
type Option func(*config)

type config struct {
	cacheSize       int
	ttl, negTTL     time.Duration
	requestTimeout  time.Duration
	registryOptions []oci.RegistryOption
	transport       http.RoundTripper
	logger          *slog.Logger
	largeReviews    int
}

// WithCache bounds the evidence cache: at most size images (the least recently used go first), each kept ttl
// when its provenance verified and negTTL when it did not (0: failures are not cached).
func WithCache(size int, ttl, negTTL time.Duration) Option {
	return func(c *config) { c.cacheSize, c.ttl, c.negTTL = size, ttl, negTTL }
}

// WithRequestTimeout bounds the decision of one review, registry round trips included.
func WithRequestTimeout(d time.Duration) Option { return func(c *config) { c.requestTimeout = d } }

// WithRegistryOptions sets how registries are reached (credentials, progress timeout).
func WithRegistryOptions(opts ...oci.RegistryOption) Option {
	return func(c *config) { c.registryOptions = append(c.registryOptions, opts...) }
}

// WithTransport sets the HTTP transport to registries (plain HTTP is still refused but to loopback).
func WithTransport(t http.RoundTripper) Option { return func(c *config) { c.transport = t } }

// WithLargeReviews sets how many reviews larger than 64 KiB are read and decoded at once (DefaultLargeReviews);
// the others wait for a slot, until their request ends.
func WithLargeReviews(n int) Option { return func(c *config) { c.largeReviews = n } }

// WithLogger logs one line per decision to l. Without it the handler is silent.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Handler serves /mutate, /validate and /healthz. It is safe for concurrent use; SetTrust and SetPolicy swap what
// later reviews are decided with.
type Handler struct {
	cfg   config
	state atomic.Pointer[state]
	cache *evidenceCache
	mux   *http.ServeMux
	large chan struct{} // a slot per large review being read
}

type state struct {
	trust  *Trust
	policy *policy.Set
}

// New returns a handler deciding with trust and the ssf.deploy gate of set.
func New(trust *Trust, set *policy.Set, opts ...Option) (*Handler, error) {
	cfg := config{cacheSize: DefaultCacheSize, ttl: DefaultTTL, negTTL: DefaultNegativeTTL,
		requestTimeout: DefaultRequestTimeout, transport: remote.DefaultTransport, largeReviews: DefaultLargeReviews}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case trust == nil || set == nil:
		return nil, errors.New("admission: trust and a policy set are required")
	case cfg.cacheSize <= 0 || cfg.ttl < 0 || cfg.negTTL < 0:
		return nil, fmt.Errorf("admission: cache size %d, ttl %s, negative ttl %s: the size must be positive, the durations not negative", cfg.cacheSize, cfg.ttl, cfg.negTTL)
	case cfg.requestTimeout <= 0:
		return nil, fmt.Errorf("admission: request timeout %s: must be positive", cfg.requestTimeout)
	case cfg.transport == nil:
		return nil, errors.New("admission: nil transport")
	case cfg.largeReviews <= 0:
		return nil, fmt.Errorf("admission: %d large reviews at once: must be positive", cfg.largeReviews)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	cfg.transport = newPingCache(cfg.transport)
	h := &Handler{cfg: cfg, cache: newEvidenceCache(cfg.cacheSize, cfg.ttl, cfg.negTTL), mux: http.NewServeMux(),
		large: make(chan struct{}, cfg.largeReviews)}
	h.state.Store(&state{trust: trust, policy: set})
	for _, p := range []string{"/mutate", "/mutate/{mode}"} {
		h.mux.HandleFunc("POST "+p, h.serve(h.mutate))
	}
	for _, p := range []string{"/validate", "/validate/{mode}"} {
		h.mux.HandleFunc("POST "+p, h.serve(h.validate))
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return h, nil
}

// SetTrust makes later reviews verify with t. Cached evidence is keyed by the trust's digest: what was verified
// with another trust is not reused.
func (h *Handler) SetTrust(t *Trust) {
	for {
		old := h.state.Load()
		if h.state.CompareAndSwap(old, &state{trust: t, policy: old.policy}) {
			return
		}
	}
}

// SetPolicy makes later reviews decide with s. The policy is evaluated on every review (per container), so a new
// set applies at once.
func (h *Handler) SetPolicy(s *policy.Set) {
	for {
		old := h.state.Load()
		if h.state.CompareAndSwap(old, &state{trust: old.trust, policy: s}) {
			return
		}
	}
}

// ServeHTTP serves the webhook's paths.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// decider decides one review in a mode, given its object as read.
type decider func(ctx context.Context, st *state, req *Request, mode Mode, o *objectRead) Response

// objectRead is what a decider needs of the object under review: its name and the containers to check, or the
// answer when it could not be read. The object's JSON itself is not kept while the review is decided.
type objectRead struct {
	name string
	cs   []Container
	bad  *Response
}

// read reads one review from r and, for a CREATE or UPDATE, its object's containers. A review larger than
// smallReview (or of unknown size) waits for one of the large slots first, until ctx ends: reading and
// decoding costs several times the body's size in memory, and the API server (or anything that reaches the
// port) may send many at once; unbounded, a few dozen reviews of MaxReviewBytes ran the webhook out of memory,
// and every opted-in namespace with it. The JSON is dropped before the review is decided.
func (h *Handler) read(ctx context.Context, r *http.Request, w http.ResponseWriter, mode Mode) (*Review, *objectRead, error) {
	if r.ContentLength < 0 || r.ContentLength > smallReview {
		select {
		case h.large <- struct{}{}:
			defer func() { <-h.large }()
		case <-ctx.Done():
			return nil, nil, errBusy
		}
	}
	rv, err := DecodeReview(http.MaxBytesReader(w, r.Body, MaxReviewBytes+1))
	if err != nil {
		return nil, nil, err
	}
	o := &objectRead{}
	if req := rv.Request; req.Operation == "CREATE" || req.Operation == "UPDATE" {
		o.name, o.cs, o.bad = objectContainers(req, mode)
	}
	rv.Request.Object, rv.Request.OldObject = nil, nil
	return rv, o, nil
}

// errBusy is a large review that found no slot before its request ended.
var errBusy = errors.New("too many large admission reviews at once")

// serve reads a review, decides it and writes the answer. A body that is not a review, or an unknown mode, is a
// 400: the API server counts it a failed call, and failurePolicy Fail denies the request (fail closed).
func (h *Handler) serve(decide decider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mode := Mode(r.PathValue("mode"))
		if mode == "" {
			mode = Enforce
		}
		if mode != Enforce && mode != Warn {
			http.Error(w, fmt.Sprintf("mode %.40q: want enforce or warn", mode), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.requestTimeout)
		defer cancel()
		rv, obj, err := h.read(ctx, r, w, mode)
		if err != nil {
			h.cfg.logger.Warn("refused an admission review", "path", r.URL.Path, "error", err)
			code := http.StatusBadRequest
			if errors.Is(err, errBusy) {
				code = http.StatusServiceUnavailable // under failurePolicy Fail, a denial
			}
			http.Error(w, err.Error(), code)
			return
		}
		start := time.Now()
		st := h.state.Load()
		resp := decide(ctx, st, rv.Request, mode, obj)
		req := rv.Request
		attrs := []any{"path", r.URL.Path, "mode", mode, "uid", req.UID, "kind", req.Kind.Kind, "namespace", req.Namespace,
			"name", req.Name, "allowed", resp.Allowed, "warnings", len(resp.Warnings), "patched", len(resp.Patch) > 0,
			"trust", st.trust.Digest, "policy", st.policy.Digest(), "duration", time.Since(start)}
		if resp.Result != nil {
			attrs = append(attrs, "denial", resp.Result.Message) // the audit trail of what was refused, and why
		}
		h.cfg.logger.Info("admission", attrs...)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer(req, resp))
	}
}

// failure is one container's failed check.
type failure struct {
	container Container
	check     string // "image", "resolving the tag", "provenance", "policy ssf.deploy"
	reason    string
}

func (f failure) String() string {
	return fmt.Sprintf("%s (image %q): %s: %s", f.container.what(), f.container.Image, f.check, bounded(printable(f.reason), maxReasonBytes))
}

// printable escapes control and format characters: a reason can quote what a registry said, and kubectl prints
// the denial to a terminal.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// verdict turns failures into the response the mode asks for: a denial naming every failure (enforce), or an
// admission with one warning per failure (warn).
func verdict(req *Request, kind, name string, mode Mode, fails []failure) Response {
	if len(fails) == 0 {
		return Response{Allowed: true}
	}
	what := fmt.Sprintf("%s %s/%s", kind, req.Namespace, name)
	if mode == Warn {
		r := Response{Allowed: true}
		for _, f := range fails {
			r.Warnings = append(r.Warnings, "ssf admission (warn mode, not enforced): "+f.String())
		}
		return r
	}
	lines := make([]string, 0, len(fails))
	for _, f := range fails {
		lines = append(lines, f.String())
	}
	msg := fmt.Sprintf("ssf admission denied %s: %s", what, strings.Join(lines, "; "))
	return Response{Allowed: false, Result: &Status{Code: http.StatusForbidden, Reason: "Forbidden", Message: bounded(msg, maxMessageBytes)}}
}

// objectContainers reads the review's containers; a review it cannot read is denied (in warn mode: a warning).
func objectContainers(req *Request, mode Mode) (string, []Container, *Response) {
	name, cs, err := Containers(req.Kind, req.Object)
	if err != nil {
		r := verdict(req, req.Kind.Kind, req.Name, mode, []failure{{container: Container{Name: "-", Image: "-"}, check: "reading the object", reason: err.Error()}})
		return "", nil, &r
	}
	if req.Name != "" {
		name = req.Name
	}
	return name, started(req, cs), nil
}

// started returns the containers of cs that an UPDATE starts: those the stored object (request.oldObject) has no
// container of the same name and image for. A kept container starts nothing new (a Pod's container runs already;
// a workload's pod template makes Pods that are reviewed themselves), so it is not verified again: otherwise, once
// the trust rotated or while a registry is away, every UPDATE of a running Pod (a label, a finalizer a controller
// removes, a deletion) would be denied, and /mutate would rewrite a tag it runs into a digest, which restarts the
// container. A CREATE, or an UPDATE whose stored object cannot be read, checks every container.
func started(req *Request, cs []Container) []Container {
	if req.Operation != "UPDATE" {
		return cs
	}
	_, old, err := Containers(req.Kind, req.OldObject)
	if err != nil {
		return cs
	}
	type key struct {
		name, image string
		volume      bool
	}
	had := map[key]bool{}
	for _, c := range old {
		had[key{c.Name, c.Image, c.Volume}] = true
	}
	out := cs[:0:0]
	for _, c := range cs {
		if !had[key{c.Name, c.Image, c.Volume}] {
			out = append(out, c)
		}
	}
	return out
}

// imageRef parses an image as the kubelet reads it (a bare name is on Docker Hub).
func imageRef(image string) (name.Reference, error) {
	if image == "" {
		return nil, errors.New("the container has no image")
	}
	ref, err := name.ParseReference(image)
	if err != nil {
		return nil, fmt.Errorf("not an image reference: %w", err)
	}
	return ref, nil
}

// mutate resolves every image named by tag to the digest the registry holds for it now, as a JSONPatch.
func (h *Handler) mutate(ctx context.Context, _ *state, req *Request, mode Mode, o *objectRead) Response {
	if req.Operation != "CREATE" && req.Operation != "UPDATE" {
		return Response{Allowed: true}
	}
	objName, cs, bad := o.name, o.cs, o.bad
	if bad != nil {
		return *bad
	}
	type resolved struct {
		digest string
		err    error
	}
	results := map[string]*resolved{}
	var mu sync.Mutex
	h.eachImage(cs, func(image string) {
		ref, err := imageRef(image)
		r := &resolved{err: err}
		if err == nil {
			if _, byDigest := ref.(name.Digest); byDigest {
				return
			}
			var d name.Digest
			d, r.err = oci.Resolve(ctx, ref, h.registryOptions()...)
			r.digest = d.DigestStr()
		}
		mu.Lock()
		results[image] = r
		mu.Unlock()
	})
	var patch []map[string]string
	var fails []failure
	for _, c := range cs {
		r := results[c.Image]
		switch {
		case r == nil:
			continue // by digest
		case r.err != nil && c.Image == "":
			continue // the API server's validation refuses it; /validate says so too
		case r.err != nil:
			fails = append(fails, failure{container: c, check: "resolving the tag", reason: r.err.Error()})
		default:
			patch = append(patch, map[string]string{"op": "replace", "path": c.Path, "value": withDigest(c.Image, r.digest)})
		}
	}
	resp := verdict(req, req.Kind.Kind, objName, mode, fails)
	if resp.Allowed && len(patch) > 0 {
		resp.Patch, _ = json.Marshal(patch)
		pt := "JSONPatch"
		resp.PatchType = &pt
	}
	return resp
}

// withDigest names image by digest d, keeping the repository as written: registry.local/app:v1 ->
// registry.local/app@sha256:...
func withDigest(image, d string) string {
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		image = image[:colon]
	}
	return image + "@" + d
}

// validate checks that every container's image carries factory provenance that verifies and passes ssf.deploy.
func (h *Handler) validate(ctx context.Context, st *state, req *Request, mode Mode, o *objectRead) Response {
	if req.Operation != "CREATE" && req.Operation != "UPDATE" {
		return Response{Allowed: true}
	}
	objName, cs, bad := o.name, o.cs, o.bad
	if bad != nil {
		return *bad
	}
	results := map[string]*found{}
	var mu sync.Mutex
	h.eachImage(cs, func(image string) {
		f := h.evidence(ctx, st.trust, image)
		mu.Lock()
		results[image] = f
		mu.Unlock()
	})
	var fails []failure
	for _, c := range cs {
		f := results[c.Image]
		if f.err != nil {
			fails = append(fails, failure{container: c, check: f.check, reason: f.err.Error()})
			continue
		}
		ev := f.ev
		if ev.Err != nil {
			// The policy is asked once the provenance verified: its rules would only repeat that it did not.
			fails = append(fails, failure{container: c, check: "provenance", reason: ev.Err.Error()})
			continue
		}
		in := policy.DeployInput{
			Artifact:   policy.Artifact{URI: ev.URI, Digest: string(ev.Digest)},
			Statements: []policy.Statement{},
			Admission:  policy.Admission{Namespace: req.Namespace, Kind: req.Kind.Kind, Name: objName, Container: c.Name, Image: c.Image},
		}
		if c.Volume {
			// An image volume's name as "volume:NAME": a container's name cannot hold a colon, so a rule can tell
			// the two apart.
			in.Admission.Container = "volume:" + c.Name
		}
		if ev.Verified != nil {
			in.Statements = ev.Verified.PolicyStatements()
		}
		d, err := st.policy.Evaluate(ctx, policy.Deploy, in)
		if err != nil {
			fails = append(fails, failure{container: c, check: "policy " + policy.Deploy.Package(), reason: err.Error()})
			continue
		}
		for _, m := range d.Denials {
			fails = append(fails, failure{container: c, check: "policy " + policy.Deploy.Package(), reason: m})
		}
	}
	return verdict(req, req.Kind.Kind, objName, mode, fails)
}

// found is an image's evidence, or the check that failed before there was any.
type found struct {
	check string
	err   error
	ev    *Evidence
}

// errByTag is why /validate refuses an image named by tag.
var errByTag = errors.New("named by tag, not by digest: the kubelet pulls whatever the registry serves for the tag when it starts the container, not what was verified now; name the image by digest (/mutate does when the mutating webhook is installed)")

// evidence returns the evidence of image, which must be named by digest, from the cache when it holds it. The
// check names what failed when there is no evidence.
func (h *Handler) evidence(ctx context.Context, trust *Trust, image string) *found {
	f := &found{}
	ref, err := imageRef(image)
	if err != nil {
		f.check, f.err = "image", err
		return f
	}
	// A tag is denied, not resolved and verified: the verdict would be about the digest the tag named at this
	// moment, and the kubelet pulls the tag later, when the registry may serve another image for it. Whatever the
	// policy set says: the default's "not named by digest" rule is the policy's to keep or drop, this is not.
	d, byDigest := ref.(name.Digest)
	if !byDigest {
		f.check, f.err = "image", errByTag
		return f
	}
	ev, _, err := h.cache.get(ctx, trust, d, func(fctx context.Context) *Evidence {
		return gather(fctx, trust, d, h.cfg.registryOptions, h.cfg.transport)
	}, h.cfg.requestTimeout)
	if err != nil {
		f.check, f.err = "provenance", err
		return f
	}
	f.ev = ev
	return f
}

func (h *Handler) registryOptions() []oci.RegistryOption {
	return append(slices.Clip(h.cfg.registryOptions), oci.WithTransport(h.cfg.transport))
}

// eachImage calls f once for each distinct image of cs, a few at a time, and waits for them all.
func (h *Handler) eachImage(cs []Container, f func(image string)) {
	seen := map[string]bool{}
	sem := make(chan struct{}, maxParallelImages)
	var wg sync.WaitGroup
	for _, c := range cs {
		if seen[c.Image] {
			continue
		}
		seen[c.Image] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(c.Image)
		}()
	}
	wg.Wait()
}

// bounded cuts s to at most n bytes, saying so.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "… (cut)"
}
