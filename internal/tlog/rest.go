package tlog

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/transparency-dev/merkle/rfc6962"
)

// The Rekor v1 REST subset that rekor-cli and Sigstore clients use, answered from a Log. The shapes are those of
// Rekor's OpenAPI (LogInfo, ConsistencyProof, LogEntry, ProposedEntry, SearchLogQuery, Error); the entry IDs are
// Rekor's: 16 hex digits of the tree ID followed by the 64 hex digits of the leaf hash (the UUID).

// Bounds of the REST API.
const (
	// MaxRequestBody bounds a POST body: a proposed entry carries a DSSE envelope or a signature, key and digest,
	// well below this; the stored body is bounded by MaxBodySize.
	MaxRequestBody = 1 << 20
	// maxSearch bounds the UUIDs, indexes and entries of one retrieve request together (Rekor allows 10).
	maxSearch = 10
	// maxConcurrentPosts bounds the POSTs verified at once.
	maxConcurrentPosts = 64
	// maxReceivingPosts bounds the POST bodies being received at once (and with maxConcurrentPosts the memory
	// bodies hold: 320 MiB at most). Receiving is kept apart from verifying so that slow senders (slowloris) hold
	// only receiving slots: more than one client address may open (registry.DefaultMaxConnsPerClient, 128), so one
	// client cannot starve the others' appends and searches, as it did when a body was received in a verifying slot.
	maxReceivingPosts = 256
)

// apiError is an error answer: Rekor's Error object {"code","message"}, with a Location for a conflict.
type apiError struct {
	code     int
	msg      string
	location string // Location of a conflict
	allow    string // Allow of a wrong method
}

func (e *apiError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// rekorEntry is Rekor's LogEntryAnon.
type rekorEntry struct {
	Body           string            `json:"body"`
	IntegratedTime int64             `json:"integratedTime"`
	LogID          string            `json:"logID"`
	LogIndex       int64             `json:"logIndex"`
	Verification   rekorVerification `json:"verification"`
}

type rekorVerification struct {
	InclusionProof       rekorInclusionProof `json:"inclusionProof"`
	SignedEntryTimestamp []byte              `json:"signedEntryTimestamp"`
}

type rekorInclusionProof struct {
	Checkpoint string   `json:"checkpoint"`
	Hashes     []string `json:"hashes"`
	LogIndex   int64    `json:"logIndex"`
	RootHash   string   `json:"rootHash"`
	TreeSize   int64    `json:"treeSize"`
}

// proposedEntry is Rekor's ProposedEntry for the kinds this log accepts.
type proposedEntry struct {
	Kind       string          `json:"kind"`
	APIVersion string          `json:"apiVersion"`
	Spec       json.RawMessage `json:"spec"`
}

// Server answers the Rekor v1 REST subset for a Log. Make one with NewServer; it is an http.Handler for the
// /api/v1/ paths only (compose it with a static file server of the log directory for the rest).
type Server struct {
	log    *Log
	logger *slog.Logger
	posts  chan struct{} // verifying slots (maxConcurrentPosts)
	bodies chan struct{} // receiving slots (maxReceivingPosts)

	inflightMu sync.Mutex
	inflight   map[[32]byte]chan struct{} // leaf hashes being appended, closed when done
}

// NewServer returns the REST API of l. logger may be nil. It builds the leaf index (a UUID lookup) before
// returning, so a large log's first lookup does not pay for it.
func NewServer(ctx context.Context, l *Log, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := l.FindLeaf(ctx, make([]byte, 32)); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("indexing the log's leaves: %w", err)
	}
	return &Server{log: l, logger: logger, posts: make(chan struct{}, maxConcurrentPosts),
		bodies: make(chan struct{}, maxReceivingPosts), inflight: map[[32]byte]chan struct{}{}}, nil
}

// ServeHTTP routes /api/v1/log and below.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var (
		status = http.StatusOK
		body   any
		err    error
	)
	p := r.URL.Path
	switch {
	case p == "/api/v1/log":
		err = allow(r, http.MethodGet)
		if err == nil {
			body, err = s.logInfo(r)
		}
	case p == "/api/v1/log/publicKey":
		if err = allow(r, http.MethodGet); err == nil {
			err = s.publicKey(w, r)
		}
		if err == nil {
			return
		}
	case p == "/api/v1/log/proof":
		if err = allow(r, http.MethodGet); err == nil {
			body, err = s.proof(r)
		}
	case p == "/api/v1/log/entries" && r.Method == http.MethodPost:
		status, body, err = s.create(w, r)
	case p == "/api/v1/log/entries":
		if err = allow(r, http.MethodGet, http.MethodPost); err == nil {
			body, err = s.byIndex(r)
		}
	case p == "/api/v1/log/entries/retrieve":
		if err = allow(r, http.MethodPost); err == nil {
			body, err = s.retrieve(w, r)
		}
	case strings.HasPrefix(p, "/api/v1/log/entries/"):
		if err = allow(r, http.MethodGet); err == nil {
			body, err = s.byUUID(r, strings.TrimPrefix(p, "/api/v1/log/entries/"))
		}
	default:
		err = errorf(http.StatusNotFound, "no such API path %q", p)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, body)
}

func allow(r *http.Request, methods ...string) error {
	for _, m := range methods {
		if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
			return nil
		}
	}
	e := errorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(methods, ", "))
	e.allow = strings.Join(methods, ", ")
	return e
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, ErrNotFound):
			ae = errorf(http.StatusNotFound, "%v", err)
		case errors.Is(err, ErrBadEntry):
			ae = errorf(http.StatusBadRequest, "%v", err)
		case errors.Is(err, ErrNotYet):
			ae = errorf(http.StatusServiceUnavailable, "%v", err)
			w.Header().Set("Retry-After", "1")
		case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
			ae = errorf(http.StatusServiceUnavailable, "the log is shutting down")
		default:
			s.logger.Error("log API", "method", r.Method, "path", r.URL.Path, "error", err)
			ae = errorf(http.StatusInternalServerError, "internal error (logged by the server)")
		}
	}
	if ae.allow != "" {
		w.Header().Set("Allow", ae.allow)
	}
	if ae.location != "" {
		w.Header().Set("Location", ae.location)
	}
	writeJSON(w, ae.code, map[string]any{"code": ae.code, "message": ae.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":500,"message":"encoding the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// treeIDParam checks an optional treeID query parameter: only this log's tree exists.
func (s *Server) treeIDParam(r *http.Request) error {
	t := r.URL.Query().Get("treeID")
	if t == "" {
		return nil
	}
	if t != strconv.FormatInt(TreeID(s.log.LogID()), 10) {
		return errorf(http.StatusNotFound, "treeID %q is not this log's tree (%d)", t, TreeID(s.log.LogID()))
	}
	return nil
}

func (s *Server) logInfo(r *http.Request) (any, error) {
	cp, err := s.log.Checkpoint(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"rootHash":       hex.EncodeToString(cp.Hash),
		"treeSize":       cp.Size,
		"signedTreeHead": string(cp.Raw),
		"treeID":         strconv.FormatInt(TreeID(s.log.LogID()), 10),
	}, nil
}

func (s *Server) publicKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.treeIDParam(r); err != nil {
		return err
	}
	b := s.log.PublicKeyPEM()
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
	return nil
}

// sizeParam parses a tree size query parameter; def is used when it is absent (0: required).
func sizeParam(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if def == 0 {
			return 0, errorf(http.StatusBadRequest, "missing query parameter %s", name)
		}
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "query parameter %s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

func (s *Server) proof(r *http.Request) (any, error) {
	if err := s.treeIDParam(r); err != nil {
		return nil, err
	}
	first, err := sizeParam(r, "firstSize", 1)
	if err != nil {
		return nil, err
	}
	last, err := sizeParam(r, "lastSize", 0)
	if err != nil {
		return nil, err
	}
	if first < 1 || last < 1 || first > last {
		return nil, errorf(http.StatusBadRequest, "firstSize %d and lastSize %d: want 1 <= firstSize <= lastSize", first, last)
	}
	hashes, err := s.log.ConsistencyProof(r.Context(), first, last)
	if err != nil {
		return nil, err
	}
	root, err := s.log.RootAt(r.Context(), last)
	if err != nil {
		return nil, err
	}
	return map[string]any{"rootHash": hex.EncodeToString(root), "hashes": hexAll(hashes)}, nil
}

func hexAll(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

// entryID is Rekor's ID of an entry: the tree ID (16 hex digits) and the leaf hash.
func (s *Server) entryID(body []byte) string {
	return fmt.Sprintf("%016x%x", TreeID(s.log.LogID()), rfc6962.DefaultHasher.HashLeaf(body))
}

// answer is one entry as Rekor's LogEntry: {entryID: LogEntryAnon}.
func (s *Server) answer(e *LogEntry) map[string]rekorEntry {
	return map[string]rekorEntry{s.entryID(e.Body): {
		Body:           base64.StdEncoding.EncodeToString(e.Body),
		IntegratedTime: e.IntegratedTime,
		LogID:          hex.EncodeToString(e.LogID[:]),
		LogIndex:       int64(e.LogIndex),
		Verification: rekorVerification{
			SignedEntryTimestamp: e.SET,
			InclusionProof: rekorInclusionProof{
				Checkpoint: string(e.Proof.Checkpoint.Raw),
				Hashes:     hexAll(e.Proof.Hashes),
				LogIndex:   int64(e.LogIndex),
				RootHash:   hex.EncodeToString(e.Proof.RootHash),
				TreeSize:   int64(e.Proof.TreeSize),
			},
		},
	}}
}

func (s *Server) byIndex(r *http.Request) (any, error) {
	v := r.URL.Query().Get("logIndex")
	if v == "" {
		return nil, errorf(http.StatusBadRequest, "missing query parameter logIndex")
	}
	i, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "query parameter logIndex=%q is not a non-negative integer", v)
	}
	e, err := s.log.Entry(r.Context(), i)
	if err != nil {
		return nil, err
	}
	return s.answer(e), nil
}

// parseUUID accepts a UUID (64 hex digits, the leaf hash) or an entry ID (this tree's 16 hex digits before it).
func (s *Server) parseUUID(id string) ([]byte, error) {
	switch len(id) {
	case 80:
		if id[:16] != fmt.Sprintf("%016x", TreeID(s.log.LogID())) {
			return nil, errorf(http.StatusNotFound, "entry ID %q names tree %s, not this log's tree %016x", id, id[:16], TreeID(s.log.LogID()))
		}
		id = id[16:]
	case 64:
	default:
		return nil, errorf(http.StatusBadRequest, "entry UUID %q is neither 64 nor 80 hex digits", id)
	}
	leaf, err := hex.DecodeString(id)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "entry UUID %q is not hex", id)
	}
	return leaf, nil
}

func (s *Server) byUUID(r *http.Request, id string) (any, error) {
	leaf, err := s.parseUUID(id)
	if err != nil {
		return nil, err
	}
	e, err := s.lookup(r.Context(), leaf)
	if err != nil {
		return nil, err
	}
	return s.answer(e), nil
}

func (s *Server) lookup(ctx context.Context, leaf []byte) (*LogEntry, error) {
	i, err := s.log.FindLeaf(ctx, leaf)
	if err != nil {
		return nil, err
	}
	return s.log.Entry(ctx, i)
}

// readBody reads a JSON request body of at most MaxRequestBody bytes into v, refusing unknown fields.
func readBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: send application/json", ct)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", MaxRequestBody)
	}
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if err := strictUnmarshal(b, v); err != nil {
		return errorf(http.StatusBadRequest, "parsing the request body: %v", err)
	}
	return nil
}

// receive reads a POST body into v in a receiving slot, then takes a verifying slot (given back by release) before
// it lets go of the receiving one, so that the bodies held in memory stay bounded while a slow sender holds no
// verifying slot.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, v any) (release func(), err error) {
	ctx := r.Context()
	select {
	case s.bodies <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.bodies }()
	if err := readBody(w, r, v); err != nil {
		return nil, err
	}
	select {
	case s.posts <- struct{}{}:
		return func() { <-s.posts }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// proposed turns a ProposedEntry into a verified, canonical Entry.
func proposed(p proposedEntry) (Entry, error) {
	if p.APIVersion != APIVersion {
		return Entry{}, fmt.Errorf("%w: apiVersion %q of kind %q is not supported (want %q)", ErrBadEntry, p.APIVersion, p.Kind, APIVersion)
	}
	switch p.Kind {
	case KindHashedRekord:
		var spec hashedRekordSpec
		if err := strictUnmarshal(p.Spec, &spec); err != nil {
			return Entry{}, fmt.Errorf("%w: parsing the hashedrekord spec: %w", ErrBadEntry, err)
		}
		digest, err := hex.DecodeString(spec.Data.Hash.Value)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: hashedrekord digest %q is not hex", ErrBadEntry, spec.Data.Hash.Value)
		}
		return NewHashedRekordEntry(spec.Data.Hash.Algorithm, digest, spec.Signature.Content, spec.Signature.PublicKey.Content)
	case KindDSSE:
		var spec struct {
			ProposedContent *struct {
				Envelope  string   `json:"envelope"`
				Verifiers [][]byte `json:"verifiers"`
			} `json:"proposedContent"`
			// Rekor's schema marks these read-only: clients (rekor-cli) may send them, the log computes them from
			// the proposed content and ignores what was sent.
			EnvelopeHash json.RawMessage `json:"envelopeHash"`
			PayloadHash  json.RawMessage `json:"payloadHash"`
			Signatures   json.RawMessage `json:"signatures"`
		}
		if err := strictUnmarshal(p.Spec, &spec); err != nil {
			return Entry{}, fmt.Errorf("%w: parsing the dsse spec: %w", ErrBadEntry, err)
		}
		if spec.ProposedContent == nil {
			return Entry{}, fmt.Errorf("%w: the dsse spec has no proposedContent (envelope and verifiers)", ErrBadEntry)
		}
		return NewDSSEEntry([]byte(spec.ProposedContent.Envelope), spec.ProposedContent.Verifiers...)
	default:
		return Entry{}, fmt.Errorf("%w: entry kind %q is not supported (want %q or %q, apiVersion %q)", ErrBadEntry, p.Kind, KindHashedRekord, KindDSSE, APIVersion)
	}
}

// create appends a proposed entry after verifying it. A second proposal of an entry already in the log (or being
// appended) is a conflict naming the existing entry, as Rekor answers; nothing is appended twice.
func (s *Server) create(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.log.ReadOnly() {
		return 0, nil, errorf(http.StatusForbidden, "this log server is read-only: it does not accept entries (the factory appends its own; run ssf log serve with --accept-entries to let clients append)")
	}
	var p proposedEntry
	release, err := s.receive(w, r, &p)
	if err != nil {
		return 0, nil, err
	}
	defer release()
	e, err := proposed(p)
	if err != nil {
		return 0, nil, err
	}
	leaf := [32]byte(rfc6962.DefaultHasher.HashLeaf(e.body))

	// One append per leaf at a time: a concurrent duplicate waits for the first, then finds it.
	for {
		s.inflightMu.Lock()
		wait, busy := s.inflight[leaf]
		if !busy {
			done := make(chan struct{})
			s.inflight[leaf] = done
			s.inflightMu.Unlock()
			defer func() {
				s.inflightMu.Lock()
				delete(s.inflight, leaf)
				s.inflightMu.Unlock()
				close(done)
			}()
			break
		}
		s.inflightMu.Unlock()
		select {
		case <-wait:
		case <-r.Context().Done():
			return 0, nil, r.Context().Err()
		}
	}
	if _, err := s.log.FindLeaf(r.Context(), leaf[:]); err == nil {
		id := s.entryID(e.body)
		return 0, nil, &apiError{code: http.StatusConflict, msg: fmt.Sprintf("an equivalent entry already exists in the log with UUID %s", id),
			location: "/api/v1/log/entries/" + id}
	} else if !errors.Is(err, ErrNotFound) {
		return 0, nil, err
	}
	le, err := s.log.Append(r.Context(), e)
	if err != nil {
		return 0, nil, err
	}
	id := s.entryID(le.Body)
	w.Header().Set("Location", "/api/v1/log/entries/"+id)
	w.Header().Set("ETag", id)
	s.logger.Info("log entry appended", "kind", le.Kind, "index", le.LogIndex, "uuid", id)
	return http.StatusCreated, s.answer(le), nil
}

func (s *Server) retrieve(w http.ResponseWriter, r *http.Request) (any, error) {
	// Proposed entries are verified here too: the same bound on work and memory as appends.
	var q struct {
		EntryUUIDs []string        `json:"entryUUIDs"`
		LogIndexes []*int64        `json:"logIndexes"`
		Entries    []proposedEntry `json:"entries"`
	}
	release, err := s.receive(w, r, &q)
	if err != nil {
		return nil, err
	}
	defer release()
	if n := len(q.EntryUUIDs) + len(q.LogIndexes) + len(q.Entries); n == 0 || n > maxSearch {
		return nil, errorf(http.StatusUnprocessableEntity, "a search names %d entries; give 1 to %d (entryUUIDs, logIndexes and entries together)", n, maxSearch)
	}
	ctx := r.Context()
	out := []map[string]rekorEntry{}
	add := func(e *LogEntry, err error) error {
		if errors.Is(err, ErrNotFound) {
			return nil // Rekor leaves out what it does not find
		}
		if err != nil {
			return err
		}
		out = append(out, s.answer(e))
		return nil
	}
	for _, id := range q.EntryUUIDs {
		leaf, err := s.parseUUID(id)
		var ae *apiError
		if errors.As(err, &ae) && ae.code == http.StatusNotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := add(s.lookup(ctx, leaf)); err != nil {
			return nil, err
		}
	}
	for _, i := range q.LogIndexes {
		if i == nil || *i < 0 {
			return nil, errorf(http.StatusBadRequest, "logIndexes: an index is missing or negative")
		}
		if err := add(s.log.Entry(ctx, uint64(*i))); err != nil {
			return nil, err
		}
	}
	for k, p := range q.Entries {
		e, err := proposed(p)
		if err != nil {
			return nil, fmt.Errorf("entries[%d]: %w", k, err)
		}
		if err := add(s.lookup(ctx, rfc6962.DefaultHasher.HashLeaf(e.body))); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var _ http.Handler = (*Server)(nil)
