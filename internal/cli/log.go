package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/transparency-dev/tessera/client"
	"k8s.io/klog/v2"

	ssfhome "github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/registry"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/tlog"
)

func newLogCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "log",
		Short: "Serve and monitor the factory's transparency log",
		Long: `Every signature the factory makes is appended to its transparency log in $SSF_HOME/log (C2SP tlog-tiles,
signed by $SSF_HOME/keys/tlog.key). ssf log serve publishes it with the Rekor v1 REST subset rekor-cli uses;
ssf log verify audits any copy of it, as a monitor. See docs/transparency-log.md.`,
	}
	c.AddCommand(newLogServeCmd(), newLogVerifyCmd())
	return c
}

// Server limits of ssf log serve: every body is small (a tile is at most 8 KiB, an entry bundle 16 MiB at the
// C2SP bound, a proposed entry 1 MiB), so fixed timeouts fit, unlike the registry's large blobs.
const (
	logReadHeaderTimeout = 10 * time.Second
	logReadTimeout       = 30 * time.Second
	logWriteTimeout      = 60 * time.Second
	logIdleTimeout       = 60 * time.Second
)

// silenceKlog discards klog's output (tessera logs through it) instead of letting it interleave with ssf's own
// lines on stderr. klog's logger may only be set before anything logs, so it is set once, when ssf starts (Main).
func silenceKlog() {
	klogOnce.Do(func() { klog.SetSlogLogger(slog.New(slog.DiscardHandler)) })
}

var klogOnce sync.Once

// factoryLayout returns the initialised factory home and the host its log signs checkpoints as (the trust
// domain, as the factory's in-process log and ssf trust export use).
func factoryLayout() (ssfhome.Layout, string, error) {
	h, err := home()
	if err != nil {
		return ssfhome.Layout{}, "", err
	}
	cfg, err := h.Config()
	if err != nil {
		return ssfhome.Layout{}, "", err
	}
	host := cfg.TrustDomain
	if host == "" {
		host = "ssf.local" // a home made before trust domains
	}
	return ssfhome.Layout{Dir: h.Dir}, host, nil
}

// loadLogKey loads the factory's log key; a missing one means the home predates the log.
func loadLogKey(l ssfhome.Layout) (crypto.Signer, error) {
	k, err := sign.LoadKey(l.TLogKey())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &hintError{usagef("the factory in %s has no transparency log key %s", l.Dir, l.TLogKey()),
			"run `ssf init` to create it"}
	}
	if err != nil {
		return nil, &usageError{err}
	}
	return k, nil
}

func newLogServeCmd() *cobra.Command {
	var addr, certFile, keyFile string
	var acceptEntries bool
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:3000] [--tls-cert CERT --tls-key KEY] [--accept-entries]",
		Short: "Serve the transparency log: its tiles and the Rekor v1 REST subset",
		Long: `Serve the factory's transparency log ($SSF_HOME/log) until Ctrl-C:

  /checkpoint, /tile/...          the log's files, read-only, exactly as a static file server of
                                  $SSF_HOME/log would serve them (never .ssf/, no listings, no symlinks)
  GET  /api/v1/log                LogInfo: rootHash, treeSize, signedTreeHead (the checkpoint), treeID
  GET  /api/v1/log/publicKey      the log key (PEM)
  GET  /api/v1/log/proof          consistency proof (?firstSize=N&lastSize=M)
  GET  /api/v1/log/entries        an entry by ?logIndex=N
  GET  /api/v1/log/entries/UUID   an entry by UUID (the leaf hash, optionally after the 16-hex tree ID)
  POST /api/v1/log/entries        with --accept-entries: append a ProposedEntry (hashedrekord or dsse,
                                  apiVersion 0.0.1), verified first; 409 with its Location if it is already
                                  in the log (without the flag: 403)
  POST /api/v1/log/entries/retrieve  search by entryUUIDs, logIndexes or entries (10 at most)

rekor-cli works against it: rekor-cli --rekor_server http://127.0.0.1:3000 loginfo (get, verify; upload with
--accept-entries). Errors are JSON {"code","message"}: 400 malformed or badly signed, 403 appends not accepted,
404 not in the log, 413 a body over 1 MiB, 422 an oversized search. Nothing is appended unless its signature
verifies.

By default the server is read-only: it follows the log from its files while builds append to it. With
--accept-entries it holds the log open as its one appender, and builds cannot append until it stops.

It listens on loopback by default; a non-loopback --addr needs --tls-cert and --tls-key. Limits: 128 connections
per client address, 4096 in all; headers within 10 s, bodies within 30 s, answers within 60 s; 256 POST
bodies received and 64 verified at once.

Exit status 2 for bad flags or an uninitialised factory.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := listenAddr(addr, "127.0.0.1:3000"); err != nil {
				return err
			}
			if (certFile == "") != (keyFile == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			if !registry.LoopbackAddr(addr) && certFile == "" {
				return usagef("--addr %q is not loopback: give --tls-cert and --tls-key, so that clients can trust what they append to", addr)
			}
			var tlsConfig *tls.Config
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return usagef("loading --tls-cert %q and --tls-key %q: %v", certFile, keyFile, err)
				}
				tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			lay, host, err := factoryLayout()
			if err != nil {
				return err
			}
			key, err := loadLogKey(lay)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx := cmd.Context()
			l, err := openServedLog(ctx, lay.Log(), key, host, acceptEntries)
			if err != nil {
				return err
			}
			defer l.Close(context.WithoutCancel(ctx))
			api, err := tlog.NewServer(ctx, l, logger)
			if err != nil {
				return err
			}
			static, err := tlog.NewStaticHandler(lay.Log())
			if err != nil {
				return err
			}
			defer static.Close()
			mux := http.NewServeMux()
			mux.Handle("/api/", api)
			mux.Handle("/", static)
			ctx, stop := context.WithCancelCause(ctx)
			defer stop(nil)
			handler, err := whileLogInPlace(ctx, lay.Log(), mux, stop)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: logReadHeaderTimeout, ReadTimeout: logReadTimeout,
				WriteTimeout: logWriteTimeout, IdleTimeout: logIdleTimeout, MaxHeaderBytes: 64 << 10, TLSConfig: tlsConfig,
				ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %q: %w", addr, err)
			}
			ln = registry.LimitListener(ln, registry.DefaultMaxConnsPerClient, registry.DefaultMaxConns)
			scheme := "http"
			if tlsConfig != nil {
				ln = tls.NewListener(ln, tlsConfig)
				scheme = "https"
			}
			cp, err := l.Checkpoint(ctx)
			if err != nil {
				ln.Close()
				return err
			}
			logger.Info("log serving", "url", scheme+"://"+ln.Addr().String(), "dir", lay.Log(), "origin", l.Origin(), "size", cp.Size,
				"accept_entries", acceptEntries)
			if err := serveUntilDone(ctx, srv, ln, logger, "log server"); err != nil {
				return err
			}
			if cause := context.Cause(ctx); errors.Is(cause, errLogReplaced) {
				return cause
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:3000", "address to listen on (HOST:PORT)")
	f.StringVar(&certFile, "tls-cert", "", "TLS certificate chain (PEM); serves HTTPS with --tls-key")
	f.StringVar(&keyFile, "tls-key", "", "TLS private key (PEM)")
	f.BoolVar(&acceptEntries, "accept-entries", false, "let clients append (POST /api/v1/log/entries); the server then holds the log")
	return cmd
}

// openServedLog opens the log to serve: read-only beside the factory's appends, or as its appender. A factory
// that has not logged anything yet has no published checkpoint: the log is created first.
func openServedLog(ctx context.Context, dir string, key crypto.Signer, host string, accept bool) (*tlog.Log, error) {
	if accept {
		return tlog.Open(ctx, dir, key, tlog.WithHost(host))
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoint")); errors.Is(err, fs.ErrNotExist) {
		l, err := tlog.Open(ctx, dir, key, tlog.WithHost(host))
		if err != nil {
			return nil, err
		}
		if err := l.Close(ctx); err != nil {
			return nil, err
		}
	}
	return tlog.OpenReadOnly(ctx, dir, key, tlog.WithHost(host))
}

// errLogReplaced is why ssf log serve stops when its log directory is no longer at $SSF_HOME/log.
var errLogReplaced = errors.New("the transparency log was replaced")

// whileLogInPlace serves h only while dir is the directory the server opened. `ssf trust rotate` moves the log
// to log-<keyid>/ and a new log, under a new key, starts in its place: a server that went on would answer from
// both at once (the files from the archived directory it holds open, the API from the new checkpoint, which its
// key cannot verify: 500s). Once dir is replaced it answers 503 and stops the server through stop, so that it
// exits 1 saying to restart it (a supervisor then serves the new log). It checks at every request and every
// second.
func whileLogInPlace(ctx context.Context, dir string, h http.Handler, stop context.CancelCauseFunc) (http.Handler, error) {
	opened, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("serving the log: %w", err)
	}
	replaced := func() error {
		fi, err := os.Stat(dir)
		if err == nil && os.SameFile(fi, opened) {
			return nil
		}
		err = fmt.Errorf("%w: %s is no longer the directory this server opened (`ssf trust rotate` archives it to log-<keyid>/ and starts a new log): restart ssf log serve to serve the new log",
			errLogReplaced, dir)
		stop(err)
		return err
	}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if replaced() != nil {
					return
				}
			}
		}
	}()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := replaced(); err != nil {
			w.Header().Set("Retry-After", "5")
			if strings.HasPrefix(r.URL.Path, "/api/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				json.NewEncoder(w).Encode(map[string]any{"code": http.StatusServiceUnavailable, "message": err.Error()})
				return
			}
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// maxMonitorFile bounds what the monitor reads from a log server in one response: the largest entry bundle
// (256 entries of at most 64 KiB each, with their length prefixes).
const maxMonitorFile = 256 * (tlog.MaxBodySize + 2)

func newLogVerifyCmd() *cobra.Command {
	var logURL, keyFile, stateFile string
	cmd := &cobra.Command{
		Use:   "verify --log URL [--key LOG.pub] [--state FILE]",
		Short: "Monitor a transparency log: checkpoint signature, consistency with what was seen, every new entry",
		Long: `Audit a transparency log served over HTTP, by ssf log serve or by any static file server of a copy of
$SSF_HOME/log (URL is the directory's root: URL/checkpoint, URL/tile/...):

  1. fetch the checkpoint and verify its signature with the log key (--key, a PEM public key; by default the
     local factory's log key);
  2. fetch every entry bundle not verified before, parse each entry (a Rekor dsse or hashedrekord 0.0.1 body)
     and recompute the tree from the state kept after the last run;
  3. the recomputed root must be the checkpoint's: this proves at once that the new tree extends the tree verified
     before (the consistency proof, derived from the entries themselves) and that no entry changed.

The state is kept per log, keyed by the checkpoint's origin, not by URL, in
$SSF_HOME/log-monitor/<sha256 of the origin>.json (or --state FILE), written atomically after a successful run, so
a mirror serving an older tree than another mirror or the log itself showed before is caught.

Exit status 0 when the log verifies, 1 on a rollback, a fork, a changed or malformed entry, a bad signature or a
log that cannot be fetched (the message names which), 2 for bad flags.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if logURL == "" {
				return usagef("--log URL is required (the root of the log: URL/checkpoint)")
			}
			u, err := url.Parse(logURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("--log %q is not an http(s) URL", logURL)
			}
			pub, err := monitorKey(keyFile)
			if err != nil {
				return err
			}
			hc := &http.Client{Timeout: 2 * time.Minute, Transport: &limitedTransport{max: maxMonitorFile}}
			f, err := client.NewHTTPFetcher(u, hc)
			if err != nil {
				return usagef("--log %q: %v", logURL, err)
			}
			ctx := cmd.Context()
			raw, err := f.ReadCheckpoint(ctx)
			if err != nil {
				return fmt.Errorf("fetching the checkpoint of %s: %w", logURL, err)
			}
			origin, host, err := checkpointOrigin(raw)
			if err != nil {
				return fmt.Errorf("log %s: %w", logURL, err)
			}
			v, err := tlog.NewVerifier(pub, host)
			if err != nil {
				return fmt.Errorf("log %s: checkpoint origin %q: %w", logURL, origin, err)
			}
			if v.Origin() != origin {
				return fmt.Errorf("log %s: %w: the checkpoint's origin is %q, the key's log is %q (wrong --key, or a checkpoint of another log)",
					logURL, tlog.ErrBadCheckpoint, origin, v.Origin())
			}
			if stateFile == "" {
				lay, _, err := factoryLayout()
				if err != nil {
					return &hintError{err, "give the monitor's state file with --state FILE, or run `ssf init`"}
				}
				sum := sha256.Sum256([]byte(origin))
				stateFile = filepath.Join(lay.Dir, "log-monitor", hex.EncodeToString(sum[:])+".json")
			}
			prev, err := readMonitorState(stateFile)
			if err != nil {
				return &usageError{err}
			}
			next, err := v.Monitor(ctx, f, prev)
			if err != nil {
				return fmt.Errorf("log %s (%s): %w", logURL, origin, err)
			}
			if err := writeMonitorState(stateFile, next); err != nil {
				return err
			}
			from := uint64(0)
			if prev != nil {
				from = prev.Size
			}
			fmt.Fprintf(cmd.OutOrStdout(), "verified log %q at %s: %d entries (%d new), root %x\nstate: %s\n",
				origin, logURL, next.Size, next.Size-from, next.Root, stateFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&logURL, "log", "", "the log's URL (its checkpoint is URL/checkpoint)")
	f.StringVar(&keyFile, "key", "", "the log's public key (PEM; default: the local factory's log key)")
	f.StringVar(&stateFile, "state", "", "the monitor state file (default: $SSF_HOME/log-monitor/<sha256 of the origin>.json)")
	return cmd
}

// monitorKey reads --key, or the local factory's log public key.
func monitorKey(keyFile string) (crypto.PublicKey, error) {
	if keyFile != "" {
		b, err := readBounded(keyFile, maxPublicKey, "a PEM public key") // verify_identity.go
		if err != nil {
			return nil, usagef("reading --key: %v", err)
		}
		pub, err := sign.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, usagef("--key %q: %v", keyFile, err)
		}
		return pub, nil
	}
	lay, _, err := factoryLayout()
	if err != nil {
		return nil, &hintError{err, "give the log's public key with --key, or run `ssf init`"}
	}
	k, err := loadLogKey(lay)
	if err != nil {
		return nil, err
	}
	return k.Public(), nil
}

// checkpointOrigin reads the origin line of a Rekor v1-style checkpoint, "<host> - <treeID>", before its signature
// is checked: the host is the key name the signature must carry, and the verifier then checks the whole origin.
func checkpointOrigin(raw []byte) (origin, host string, err error) {
	line, _, ok := bytes.Cut(raw, []byte("\n"))
	if !ok {
		return "", "", fmt.Errorf("%w: no origin line", tlog.ErrBadCheckpoint)
	}
	origin = string(line)
	host, _, ok = strings.Cut(origin, " - ")
	if !ok || host == "" {
		return "", "", fmt.Errorf("%w: origin %q is not \"<host> - <treeID>\"", tlog.ErrBadCheckpoint, printable(origin))
	}
	return origin, host, nil
}

// maxStateFile bounds a monitor state: a compact range holds at most 64 hashes.
const maxStateFile = 64 << 10

func readMonitorState(path string) (*tlog.MonitorState, error) {
	b, err := readBounded(path, maxStateFile, "a monitor state") // verify_identity.go
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the monitor state: %w", err)
	}
	var st tlog.MonitorState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("parsing the monitor state %q: %w (remove it to start over, trusting the log's current tree)", path, err)
	}
	return &st, nil
}

// writeMonitorState replaces path with st: a temporary file in the same directory, synced, renamed over it, and
// the directory synced, so a crash leaves the old state or the new one.
func writeMonitorState(path string, st *tlog.MonitorState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing the monitor state %q: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return fmt.Errorf("writing the monitor state %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("writing the monitor state %q: %w", path, err)
	}
	return nil
}

// limitedTransport refuses a response body over max bytes, so a hostile log server cannot make the monitor read
// without end.
type limitedTransport struct{ max int64 }

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: t.max, url: r.URL.String()}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	left int64
	url  string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more than allowed tells a body at the limit from one over it.
		var one [1]byte
		if n, _ := b.ReadCloser.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("the response of %s is larger than %d bytes", b.url, maxMonitorFile)
		}
		return b.ReadCloser.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
