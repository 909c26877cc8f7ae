package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ssf-dev/ssf/internal/registry"
)

func newRegistryCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "registry",
		Short: "Run and manage the factory's embedded OCI registry",
		Long: `The embedded registry implements the OCI distribution-spec v1.1 (pull, push, mount, tags, deletion and
the referrers API, and /v2/_catalog). It stores content in $SSF_HOME/registry and its users in
$SSF_HOME/registry/users; ssf registry ls lists what it holds.`,
	}
	c.AddCommand(newRegistryServeCmd(), newRegistryUserCmd(), newRegistryGCCmd(), newRegistryLsCmd())
	return c
}

func registryDir() (string, error) {
	h, err := home()
	if err != nil {
		return "", err
	}
	if _, err := h.Config(); err != nil {
		return "", err
	}
	return filepath.Join(h.Dir, "registry"), nil
}

func usersFile(dir string) string { return filepath.Join(dir, "users") }

func newRegistryServeCmd() *cobra.Command {
	var addr, certFile, keyFile string
	var anonymousPull, insecureLocal bool
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:5000] [--tls-cert CERT --tls-key KEY] [--anonymous-pull] [--insecure-local]",
		Short: "Serve the embedded OCI registry",
		Long: `Serve the embedded OCI registry (distribution-spec v1.1) from $SSF_HOME/registry until Ctrl-C.

Access control: clients authenticate with HTTP basic auth against the users in $SSF_HOME/registry/users (add
them with ssf registry user add NAME). Pushing always needs a user, except with --insecure-local, which lets
anything that can reach the loopback address push without one; it is refused on other addresses.
--anonymous-pull lets clients without credentials pull; it defaults to true on a loopback address and to
false elsewhere.

Basic auth sends the password with every request, so ssf only accepts credentials over TLS or from loopback
clients, and refuses to listen on a non-loopback address without --tls-cert and --tls-key.

Limits: a client address may hold 128 connections and all clients together 4096 (past that, a new client takes
the place of an idle connection of the client holding the most); request headers must arrive
within 10 s, idle connections close after 60 s, and bodies must move at 64 KiB/s on average after 30 s, with
no pause over 30 s (large pushes are not cut off). A client address with 5 failed logins waits before its next
try (429 with Retry-After, doubling up to 15 min).

Requests are logged to stderr. Exit status 2 for bad flags.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			loopback := registry.LoopbackAddr(addr)
			if _, err := listenAddr(addr, "127.0.0.1:5000"); err != nil {
				return err
			}
			if (certFile == "") != (keyFile == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			if insecureLocal && !loopback {
				return usagef("--insecure-local needs a loopback --addr (127.0.0.1 or [::1]), not %q", addr)
			}
			if !loopback && certFile == "" {
				return usagef("--addr %q is not loopback: give --tls-cert and --tls-key, or passwords would cross the network in clear", addr)
			}
			if !cmd.Flags().Changed("anonymous-pull") {
				anonymousPull = loopback
			}
			dir, err := registryDir()
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			opts := []registry.Option{registry.WithUsersFile(usersFile(dir)), registry.WithAnonymousPull(anonymousPull),
				registry.WithLogger(logger)}
			if insecureLocal {
				opts = append(opts, registry.WithInsecureLocalPushUnsafe())
			}
			reg, err := registry.New(dir, opts...)
			if err != nil {
				return err
			}
			srv := registry.NewServer(reg, logger)
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return usagef("loading --tls-cert %q and --tls-key %q: %v", certFile, keyFile, err)
				}
				srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %q: %w", addr, err)
			}
			// Bounded before TLS, so that a client holding many connections costs no handshakes either.
			ln = registry.LimitListener(ln, registry.DefaultMaxConnsPerClient, registry.DefaultMaxConns)
			scheme := "http"
			if srv.TLSConfig != nil {
				ln = tls.NewListener(ln, srv.TLSConfig)
				scheme = "https"
			}
			logger.Info("registry serving", "url", scheme+"://"+ln.Addr().String()+"/v2/", "dir", dir,
				"anonymous_pull", anonymousPull, "insecure_local_push", insecureLocal)
			return serveUntilDone(cmd.Context(), srv, ln, logger, "registry")
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:5000", "address to listen on (HOST:PORT)")
	f.StringVar(&certFile, "tls-cert", "", "TLS certificate chain (PEM); serves HTTPS with --tls-key")
	f.StringVar(&keyFile, "tls-key", "", "TLS private key (PEM)")
	f.BoolVar(&anonymousPull, "anonymous-pull", false, "allow pulls without credentials (default: true on loopback, false elsewhere)")
	f.BoolVar(&insecureLocal, "insecure-local", false, "allow pushes without credentials from loopback clients (loopback --addr only)")
	return cmd
}

// listenAddr checks a server's --addr before anything is opened and returns its host: HOST:PORT with a port from
// 0 to 65535, or bad usage (exit 2) naming it — not a failure to listen (exit 1). example shows the form.
func listenAddr(addr, example string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usagef("--addr %q: %v (want HOST:PORT, for example %s)", addr, err, example)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", usagef("--addr %q: port %q is not a number from 0 to 65535 (want HOST:PORT, for example %s)", addr, port, example)
	}
	return host, nil
}

// serveUntilDone serves until ctx ends (Ctrl-C), then lets requests in flight (pushes, log appends) finish for up
// to 10 seconds; what names the server in the log.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener, logger *slog.Logger, what string) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info(what + " shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newRegistryUserCmd() *cobra.Command {
	u := &cobra.Command{
		Use:   "user",
		Short: "Manage the registry's users",
	}
	u.AddCommand(&cobra.Command{
		Use:   "add NAME",
		Short: "Add a registry user (or change their password); the password is read from stdin",
		Long: `Add NAME to $SSF_HOME/registry/users (mode 0600) with a bcrypt hash of a password read from stdin: typed
twice without echo on a terminal, or the first line of a pipe for scripts:

  printf '%s\n' "$PASSWORD" | ssf registry user add ci

A running ssf registry serve picks the change up on the next request.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dir, err := registryDir()
			if err != nil {
				return err
			}
			pw, err := readPassword(cmd)
			if err != nil {
				return err
			}
			if err := registry.AddUser(cmd.Context(), usersFile(dir), a[0], pw); err != nil {
				return usagef("%v", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s saved in %s\n", a[0], usersFile(dir))
			return nil
		},
	})
	return u
}

// readPassword reads a password without echo from a terminal (asking twice), or the first line of stdin.
func readPassword(cmd *cobra.Command) ([]byte, error) {
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return nil, err
		}
		fmt.Fprint(cmd.ErrOrStderr(), "again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p1, p2) {
			return nil, usagef("the passwords differ")
		}
		return p1, nil
	}
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the password from stdin: %w", err)
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 {
		return nil, usagef("no password on stdin")
	}
	return line, nil
}

func newRegistryGCCmd() *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "gc [--grace 1h]",
		Short: "Remove blobs that no manifest references",
		Long: `Remove blobs of the embedded registry that no manifest in any repository references, and upload sessions
untouched for a day or started over a week ago. Blobs younger than --grace (or than the oldest upload in progress) are kept, because
clients push blobs before the manifest that references them. Safe to run while ssf registry serve runs: pushes
wait while it sweeps.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if grace < 0 {
				return usagef("--grace %s is negative", grace)
			}
			dir, err := registryDir()
			if err != nil {
				return err
			}
			reg, err := registry.New(dir, registry.WithGCGracePeriod(grace))
			if err != nil {
				return err
			}
			st, err := reg.GC(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "manifests %d, blobs kept %d, blobs removed %d (%d bytes), links removed %d, uploads removed %d\n",
				st.Manifests, st.BlobsKept, st.BlobsRemoved, st.BytesRemoved, st.LinksRemoved, st.Uploads)
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", time.Hour, "keep unreferenced blobs younger than this")
	return cmd
}

func newRegistryLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls [REPO]",
		Short: "List the embedded registry's repositories, or a repository's tags",
		Long: `List the repositories of the embedded registry in $SSF_HOME/registry, one a line, in byte order; given REPO
(a repository name as pushed, e.g. team/app), list its tags, each with the digest it points at.

ls reads $SSF_HOME/registry directly, through the same store ssf registry serve answers /v2/_catalog and
/v2/<name>/tags/list from: it needs no running server and no credentials, only read access to $SSF_HOME (which
is the registry's owner's). For another registry, or over the network, use crane catalog and crane ls.

Exit status 2 for a REPO that is not a valid name or is not in the registry.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dir, err := registryDir()
			if err != nil {
				return err
			}
			reg, err := registry.New(dir)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			// Page through, so a registry with many repositories or tags is never held in memory at once.
			const page = 1000
			if len(a) == 0 {
				for last := ""; ; {
					repos, more, err := reg.Repositories(cmd.Context(), last, page)
					if err != nil {
						return err
					}
					for _, r := range repos {
						fmt.Fprintln(w, r)
					}
					if !more || len(repos) == 0 {
						return nil
					}
					last = repos[len(repos)-1]
				}
			}
			for last := ""; ; {
				tags, more, err := reg.Tags(cmd.Context(), a[0], last, page)
				if errors.Is(err, fs.ErrNotExist) {
					return usagef("no repository %q in %s (ssf registry ls lists them)", a[0], dir)
				}
				if errors.Is(err, registry.ErrNameInvalid) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				for _, t := range tags {
					fmt.Fprintf(w, "%s  %s\n", t.Name, t.Digest)
				}
				if !more || len(tags) == 0 {
					return nil
				}
				last = tags[len(tags)-1].Name
			}
		},
	}
}
