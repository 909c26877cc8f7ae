package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// MaxManifestSize is the largest manifest the registry accepts (the spec asks registries to take at least 4 MiB).
const MaxManifestSize = 4 << 20

// Registry is an OCI distribution-spec v1.1 registry over a directory. It is an http.Handler serving /v2/.
type Registry struct {
	store    store
	cfg      config
	users    *users
	log      *slog.Logger
	sessions sessionLocks
	nowFor   func() time.Time
	auth     *authLimiter
	limits   transferLimits
	// referrersPage bounds one referrers response (defaultReferrersPage when 0); tests make it small.
	referrersPage int
}

var _ http.Handler = (*Registry)(nil)

type config struct {
	usersFile         string
	anonymousPull     bool
	insecureLocalPush bool
	logger            *slog.Logger
	gcGrace           time.Duration
}

// Option configures a Registry.
type Option func(*config) error

// WithUsersFile authenticates clients with HTTP basic auth against a file of "name:bcrypt-hash" lines (see
// AddUser). The file is re-read when it changes; a missing file means no users yet. Credentials are accepted
// only over TLS or from loopback clients.
func WithUsersFile(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("WithUsersFile: empty path")
		}
		c.usersFile = path
		return nil
	}
}

// WithAnonymousPull lets clients without credentials pull (GET and HEAD). Push always needs credentials.
func WithAnonymousPull(allow bool) Option {
	return func(c *config) error { c.anonymousPull = allow; return nil }
}

// WithInsecureLocalPushUnsafe lets clients push without credentials, but only from a loopback address. It is
// meant for tests and single-user machines; anything that can connect to the host's loopback can then push.
func WithInsecureLocalPushUnsafe() Option {
	return func(c *config) error { c.insecureLocalPush = true; return nil }
}

// WithLogger logs one line per request (and storage errors) to l. Without it the registry is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithGCGracePeriod sets how old an unreferenced blob must be before GC removes it (default one hour). Clients
// push blobs before the manifest that references them; the grace period keeps those blobs alive meanwhile.
func WithGCGracePeriod(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("WithGCGracePeriod: negative duration %s", d)
		}
		c.gcGrace = d
		return nil
	}
}

// New opens (creating if needed) a registry stored under dir.
func New(dir string, opts ...Option) (*Registry, error) {
	cfg := config{gcGrace: time.Hour}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return nil, errors.New("registry directory is empty")
	}
	r := &Registry{store: store{dir: dir}, cfg: cfg, log: cfg.logger, nowFor: time.Now, auth: newAuthLimiter(time.Now),
		limits: defaultTransferLimits()}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if err := r.store.init(); err != nil {
		return nil, err
	}
	if cfg.usersFile != "" {
		u, err := loadUsers(cfg.usersFile)
		if err != nil {
			return nil, err
		}
		r.users = u
	}
	return r, nil
}

// Error codes of the distribution spec.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
)

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers with the spec's JSON error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: code, Message: msg}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// regError is an answer the client gets as the spec's error body: handlers return it, and respond writes it.
type regError struct {
	status  int
	code    string
	message string
}

func (e *regError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

// errf makes a regError.
func errf(status int, code, msg string) error {
	return &regError{status: status, code: code, message: msg}
}

// errClientGone ends a request whose client went away: there is no one to answer.
var errClientGone = errors.New("client went away")

// respond writes a handler's error, in one place for all handlers: a regError as the spec's error body, any
// other error logged and answered 500 without detail (storage paths are not the client's business).
func (r *Registry) respond(w http.ResponseWriter, req *http.Request, err error) {
	if err == nil || errors.Is(err, errClientGone) {
		return
	}
	var re *regError
	if errors.As(err, &re) {
		writeError(w, re.status, re.code, re.message)
		return
	}
	r.log.Error("registry: internal error", "method", req.Method, "path", req.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
}

// handler is a registry endpoint: it writes a success itself and returns any failure for respond to write.
type handler func(w http.ResponseWriter, req *http.Request) error

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	rc     *http.ResponseController // nil: no write deadlines
	lim    transferLimits
	body   *bodyReader // the request's body, nil without one
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.limitUnreadBody()
	// The handler may have worked for long (hashing, fsync) since the request began.
	s.extendWrite(0)
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
		s.limitUnreadBody()
	}
	s.extendWrite(len(b))
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// ReadFrom keeps io.Copy's sendfile path for blob downloads, in chunks that each get their write deadline.
func (s *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	var total int64
	for {
		s.extendWrite(writeChunk)
		n, err := io.Copy(s.ResponseWriter, io.LimitReader(src, writeChunk))
		total += n
		s.bytes += n
		if err != nil || n < writeChunk {
			return total, err
		}
	}
}

// limitUnreadBody bounds what is left of a request body that the handler did not read. The HTTP/1 server
// reads up to 256 KiB of it before sending the answer (so that the connection can be reused), under no deadline
// of its own: a client that declared a body and never sent it held the connection for ever, without even getting
// its 401. It now gets bodyDrain for that, after which the server closes the connection.
func (s *statusWriter) limitUnreadBody() {
	if s.body != nil && !s.body.complete() {
		s.body.rc.SetReadDeadline(time.Now().Add(min(bodyDrain, s.lim.stall)))
	}
}

// bodyDrain is how long the server may read the unread rest of a request body: a client that is sending it
// has it on the wire by then, and one that is not loses the connection.
const bodyDrain = time.Second

// ServeHTTP routes /v2/ requests.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := r.nowFor()
	sw := &statusWriter{ResponseWriter: w, lim: r.limits}
	// Deadlines come from the transfer limits, per request; a writer without deadline support (a test's
	// recorder) leaves them unbounded.
	rc := http.NewResponseController(w)
	if rc.SetWriteDeadline(time.Now().Add(r.limits.grace)) == nil {
		sw.rc = rc
	}
	if req.Body != nil && req.Body != http.NoBody {
		body := &bodyReader{ReadCloser: req.Body, rc: rc, lim: r.limits, start: time.Now(), now: time.Now,
			length: req.ContentLength}
		req.Body = body
		sw.body = body
		// Until the handler reads the body (or answers without it, see limitUnreadBody), nothing of it may
		// take longer than the stall limit either.
		rc.SetReadDeadline(time.Now().Add(r.limits.stall))
	}
	user := r.serve(sw, req)
	r.log.Info("registry request", "method", req.Method, "path", req.URL.Path, "status", sw.status,
		"bytes", sw.bytes, "user", user, "remote", req.RemoteAddr, "duration", r.nowFor().Sub(start))
}

// route is a parsed request path.
type route struct {
	kind string // "base", "catalog", "tags", "upload", "blob", "manifest", "referrers"
	name string
	arg  string // upload id, digest or reference
}

// parsePath splits /v2/<name>/<endpoint> into a route. Names contain slashes, so endpoints are matched from
// the end; no valid name component is "blobs", "uploads" etc. followed by a digest, so this is unambiguous
// for valid requests, and the name is validated afterwards anyway.
func parsePath(p string) (route, bool) {
	if p == "/v2" || p == "/v2/" {
		return route{kind: "base"}, true
	}
	if p == "/v2/_catalog" {
		return route{kind: "catalog"}, true
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, false
	}
	s := strings.Split(rest, "/")
	n := len(s)
	join := func(k int) string { return strings.Join(s[:k], "/") }
	switch {
	case n >= 3 && s[n-2] == "tags" && s[n-1] == "list":
		return route{kind: "tags", name: join(n - 2)}, true
	case n >= 4 && s[n-3] == "blobs" && s[n-2] == "uploads":
		return route{kind: "upload", name: join(n - 3), arg: s[n-1]}, true
	case n >= 3 && s[n-2] == "blobs" && s[n-1] == "uploads":
		return route{kind: "upload", name: join(n - 2)}, true
	case n >= 3 && s[n-2] == "blobs":
		return route{kind: "blob", name: join(n - 2), arg: s[n-1]}, true
	case n >= 3 && s[n-2] == "manifests":
		return route{kind: "manifest", name: join(n - 2), arg: s[n-1]}, true
	case n >= 3 && s[n-2] == "referrers":
		return route{kind: "referrers", name: join(n - 2), arg: s[n-1]}, true
	}
	return route{}, false
}

// serve handles one request and returns the authenticated user's name ("" when anonymous) for the log.
func (r *Registry) serve(w http.ResponseWriter, req *http.Request) string {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, ok := parsePath(req.URL.Path)
	if !ok {
		r.respond(w, req, errf(http.StatusNotFound, codeUnsupported, "no such endpoint"))
		return ""
	}
	push := req.Method != http.MethodGet && req.Method != http.MethodHead
	user, ok := r.authorize(w, req, push && rt.kind != "base")
	if !ok {
		return user
	}
	if rt.kind == "base" {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			r.respond(w, req, errf(http.StatusMethodNotAllowed, codeUnsupported, "method not allowed"))
			return user
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return user
	}
	if rt.kind == "catalog" {
		r.respond(w, req, methods(w, req, map[string]handler{"GET": r.listCatalog}))
		return user
	}
	if !validName(rt.name) {
		r.respond(w, req, errf(http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("invalid repository name %q", trimmed(rt.name))))
		return user
	}
	var hs map[string]handler
	switch rt.kind {
	case "tags":
		hs = map[string]handler{"GET": func(w http.ResponseWriter, req *http.Request) error {
			return r.listTags(w, req, rt.name)
		}}
	case "referrers":
		hs = map[string]handler{"GET": func(w http.ResponseWriter, req *http.Request) error {
			return r.listReferrers(w, req, rt.name, rt.arg)
		}}
	case "blob":
		get := func(w http.ResponseWriter, req *http.Request) error { return r.getBlob(w, req, rt.name, rt.arg) }
		hs = map[string]handler{"GET": get, "HEAD": get,
			"DELETE": func(w http.ResponseWriter, req *http.Request) error { return r.deleteBlob(w, req, rt.name, rt.arg) },
		}
	case "upload":
		if rt.arg == "" {
			hs = map[string]handler{"POST": func(w http.ResponseWriter, req *http.Request) error {
				return r.startUpload(w, req, rt.name)
			}}
			break
		}
		hs = map[string]handler{
			"GET":    func(w http.ResponseWriter, req *http.Request) error { return r.uploadStatus(w, req, rt.name, rt.arg) },
			"PATCH":  func(w http.ResponseWriter, req *http.Request) error { return r.patchUpload(w, req, rt.name, rt.arg) },
			"PUT":    func(w http.ResponseWriter, req *http.Request) error { return r.putUpload(w, req, rt.name, rt.arg) },
			"DELETE": func(w http.ResponseWriter, req *http.Request) error { return r.cancelUpload(w, req, rt.name, rt.arg) },
		}
	case "manifest":
		get := func(w http.ResponseWriter, req *http.Request) error { return r.getManifest(w, req, rt.name, rt.arg) }
		hs = map[string]handler{"GET": get, "HEAD": get,
			"PUT":    func(w http.ResponseWriter, req *http.Request) error { return r.putManifest(w, req, rt.name, rt.arg) },
			"DELETE": func(w http.ResponseWriter, req *http.Request) error { return r.deleteManifest(w, req, rt.name, rt.arg) },
		}
	}
	r.respond(w, req, methods(w, req, hs))
	return user
}

func methods(w http.ResponseWriter, req *http.Request, hs map[string]handler) error {
	h, ok := hs[req.Method]
	if !ok {
		allow := make([]string, 0, len(hs))
		for m := range hs {
			allow = append(allow, m)
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return errf(http.StatusMethodNotAllowed, codeUnsupported, fmt.Sprintf("method %s not allowed here", req.Method))
	}
	return h(w, req)
}

// authorize decides whether the request may go on. Valid credentials allow everything; without credentials,
// pulls need WithAnonymousPull and pushes need WithInsecureLocalPushUnsafe and a loopback client.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, push bool) (string, bool) {
	deny := func(msg string) (string, bool) {
		w.Header().Set("WWW-Authenticate", `Basic realm="ssf"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, msg)
		return "", false
	}
	if req.Header.Get("Authorization") != "" {
		name, pass, ok := req.BasicAuth()
		if !ok {
			return deny("only basic authentication is supported")
		}
		if req.TLS == nil && !loopbackClient(req) {
			return deny("basic authentication is accepted only over TLS or from loopback")
		}
		if r.users == nil {
			return deny("invalid username or password")
		}
		if r.users.cached(name, pass) {
			return name, true
		}
		client := clientKey(req)
		if wait := r.auth.begin(client); wait > 0 {
			tooManyRequests(w, wait, "too many failed logins from "+client)
			return "", false
		}
		release, ok := r.auth.slot(req.Context())
		if !ok {
			r.auth.abort(client) // not this client's failure: the registry is busy
			tooManyRequests(w, time.Second, "too many logins being checked")
			return "", false
		}
		good := r.users.check(name, pass)
		release()
		r.auth.end(client, good)
		if !good {
			return deny("invalid username or password")
		}
		return name, true
	}
	if !push {
		if r.cfg.anonymousPull {
			return "", true
		}
		return deny("authentication required")
	}
	if r.cfg.insecureLocalPush && loopbackClient(req) {
		return "", true
	}
	return deny("authentication required to push")
}

func loopbackClient(req *http.Request) bool { return LoopbackAddr(req.RemoteAddr) }

// LoopbackAddr reports whether addr, a HOST:PORT address, names only loopback: a loopback IP literal (127.0.0.0/8,
// ::1, or 127.0.0.0/8 mapped into IPv6). The server uses it for a client's address and the CLI for the address to
// listen on, so that both apply one rule. A name, even "localhost", is not loopback: what it resolves to is up to
// /etc/hosts and DNS (Go does not pin it), and a DNS answer could then make a plain-HTTP registry, with anonymous
// pull on, listen on a network address.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
