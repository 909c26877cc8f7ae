package cli

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/registry"
	"github.com/ssf-dev/ssf/internal/trust"
)

func newNodeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Add nodes (machines that run tasks) to the factory's CA, list and revoke them",
	}
	c.AddCommand(newNodeTokenCmd(), newNodeJoinCmd(), newNodeServeCmd(), newNodeListCmd(), newNodeRevokeCmd())
	return c
}

func newNodeTokenCmd() *cobra.Command {
	var ttl time.Duration
	var pipelines []string
	cmd := &cobra.Command{
		Use:   "token [--ttl 15m] [--pipelines GLOB,...]",
		Short: "Print a one-time token a new node joins this factory's CA with",
		Long: `Print a one-time token for ssf node join, on the factory that holds the CA.

The token is random (256 bits) and names the trust domain: ssfjoin1.TD.SECRET. Only its sha256 is stored,
with its expiry, under $SSF_HOME/node-tokens/ (0600). It admits one node, once, before it expires (--ttl,
between 1m and 24h, default 15m). Treat it as a secret until it is used: whoever holds it can join a node.

The node it admits may sign (over ssf node serve's node API) only as workloads of this factory's trust domain,
spiffe://TD/pipeline/<pipeline>[/task/<task>], never as a node or another trust domain; --pipelines narrows
that to the pipelines whose name matches one of the globs (path.Match: *, ?, [a-z]), for example
--pipelines 'web-*,api'. Without it the node may sign for every pipeline.

The token goes to stdout; stderr says how to join, with the CA root's pin (--ca-cert-hash sha256:HEX) for a
join over HTTPS.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < trust.MinTokenTTL || ttl > trust.MaxTokenTTL {
				return usagef("--ttl %v: a token lives between %v and %v", ttl, trust.MinTokenTTL, trust.MaxTokenTTL)
			}
			h, err := home()
			if err != nil {
				return err
			}
			// --pipelines "" (an empty $SCOPE in a script) must not fall open to a node that signs for every
			// pipeline: an unscoped token is asked for by leaving the flag out.
			if cmd.Flags().Changed("pipelines") && len(pipelines) == 0 {
				return usagef("--pipelines is empty: name at least one glob of pipeline names, such as 'web-*' (leave --pipelines out for a node that may sign for every pipeline)")
			}
			if err := trust.CheckPipelineGlobs(pipelines); err != nil {
				return usagef("%v", err)
			}
			tok, exp, err := h.NodeToken(ttl, pipelines...)
			if err != nil {
				return err
			}
			pin, err := h.RootPin()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			// FILE is said to hold the token printed above: a newcomer saw a token and a --token-file FILE and
			// nothing linking the two.
			fmt.Fprintf(cmd.ErrOrStderr(), "one-time join token (above, on stdout), valid until %s: save it in a file "+
				"(ssf node token > FILE), then on the new node run\n"+
				"  SSF_HOME=NEW_HOME ssf node join --ca-home %s --token-file FILE\n"+
				"or, with ssf node serve running here:\n"+
				"  SSF_HOME=NEW_HOME ssf node join --ca https://HOST:PORT --ca-cert-hash %s --token-file FILE\n",
				exp.Format(time.RFC3339), h.Dir, pin)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", trust.DefaultTokenTTL, "how long the token stays valid (1m to 24h)")
	cmd.Flags().StringSliceVar(&pipelines, "pipelines", nil, "the pipelines (globs of their names) the node may sign for (default: all)")
	return cmd
}

func newNodeJoinCmd() *cobra.Command {
	var caHome, caURL, caPin, token, tokenFile, host string
	cmd := &cobra.Command{
		Use:   "join --ca-home DIR | --ca URL --ca-cert-hash sha256:HEX  --token TOKEN | --token-file FILE  [--host NAME]",
		Short: "Make this home a node of another factory's CA, with a one-time token",
		Long: `Join this factory home ($SSF_HOME, a new one) to the CA of a factory as a node, reaching the CA either
in-process through its home directory (--ca-home DIR, a directory this user can read and write: the CA's home
on this host, or mounted) or over HTTPS (--ca https://HOST:PORT, where ssf node serve runs, with
--ca-cert-hash, the CA root's pin that ssf node token prints: the server must chain to that root, so nobody in
between sees the token):

  1. make this node's key, keys/node.key (ECDSA P-256, 0600), unless a failed join left one;
  2. send the CA a join request: the token, this node's host name and public key, signed by the key;
  3. the CA checks the request and the token (unused, unexpired, of its trust domain), spends the token and
     issues spiffe://TD/node/<host> for the key (1 year, clientAuth);
  4. check the certificate (this key, this name, chaining to the CA's root) and write keys/node.crt and
     keys/ca-root.crt.

The node's certificate then signs its requests for workload certificates, which the CA grants as it does its own
node's, within the node's scope (ssf node token --pipelines). After a join over --ca, the home is initialised
for builds (config.yaml with the factory's trust domain and issuer; no CA of its own) and joined.json records
the node API's URL and pin: ssf build --signer identity on this home gets its certificates, log entries and
timestamps from ssf node serve there, and its bundles verify as the factory's own. The node keeps the
factory's trusted root (fetched at the join, refreshed by identity builds) for ssf verify and ssf trust export.

A home that already has a node certificate or a CA of its own is refused. After ssf trust rotate on the CA, join
again with a new token (into a new home): the new intermediate does not accept certificates of the old one.

Exit status 2 for a refused join (a used, expired, unknown or foreign token, a malformed request).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (caHome == "") == (caURL == "") || (token == "") == (tokenFile == "") {
				return usagef("give one of --ca-home and --ca, and one of --token and --token-file")
			}
			if (caURL != "") != (caPin != "") {
				return usagef("--ca and --ca-cert-hash go together (ssf node token prints the hash)")
			}
			if tokenFile != "" {
				t, err := readTokenFile(tokenFile)
				if err != nil {
					return err
				}
				token = t
			}
			if host != "" && trust.NodeName(host) != host {
				return usagef("--host %q is not a node name: use lower-case a-z, 0-9, '.', '-' and '_' (for example %q)", host, trust.NodeName(host))
			}
			h, err := home()
			if err != nil {
				return err
			}
			var send func([]byte) ([]byte, error)
			if caURL != "" {
				if send, err = trust.HTTPJoin(cmd.Context(), caURL, caPin); err != nil {
					return &usageError{err}
				}
			} else {
				abs, err := filepath.Abs(caHome)
				if err != nil {
					return usagef("--ca-home %q: %v", caHome, err)
				}
				if abs == h.Dir {
					return usagef("--ca-home %q is this home: a joining node needs a home of its own (set SSF_HOME to a new directory)", caHome)
				}
				send = (&factory.Home{Dir: abs}).AdmitNode
			}
			id, err := h.JoinNode(token, host, send, caURL, caPin)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "joined as %s\n", id)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caHome, "ca-home", "", "the factory home holding the CA (its $SSF_HOME)")
	f.StringVar(&caURL, "ca", "", "the CA's join endpoint, https://HOST:PORT (ssf node serve)")
	f.StringVar(&caPin, "ca-cert-hash", "", "the CA root's pin, sha256:HEX (ssf node token prints it)")
	f.StringVar(&token, "token", "", "the one-time token `ssf node token` printed on the CA's home")
	f.StringVar(&tokenFile, "token-file", "", "read the token from this file (keeps it out of the process list)")
	f.StringVar(&host, "host", "", "this node's name in its SPIFFE ID (default: the host name)")
	return cmd
}

// readTokenFile reads a join token from a small file (surrounding white space dropped).
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", usagef("--token-file: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1025))
	if err != nil {
		return "", usagef("--token-file %q: %v", path, err)
	}
	if len(data) > 1024 {
		return "", usagef("--token-file %q is over 1024 bytes: it does not hold just a token", path)
	}
	return strings.TrimSpace(string(data)), nil
}

func newNodeServeCmd() *cobra.Command {
	var addr string
	var names []string
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8442] [--name HOST ...]",
		Short: "Serve joins (ssf node join --ca) and the node API joined nodes sign through, over HTTPS",
		Long: `Serve POST ` + trust.JoinPath + ` over HTTPS until Ctrl-C, on the factory that holds the CA: a node that
holds a token from ssf node token joins with
  ssf node join --ca https://HOST:PORT --ca-cert-hash sha256:HEX --token-file FILE

The server's TLS certificate is made at start for a key held only in memory, certified for a day by the CA's
intermediate, for the --addr host and each --name (DNS names or addresses the nodes dial). Joining nodes check it
against the root's pin, so no other certificate authority is involved and nobody in between sees a token. The
checks are those of a join over --ca-home; a refusal is 403 with {"error": why}, which the joining node prints.
Restart it after ssf trust rotate.

The node API (docs/keyless.md, Nodes) answers joined nodes over mutual TLS with their node certificate:
GET ` + trust.NodeTrustPath + ` (trust domain, issuer, trusted root), POST ` + trust.NodeCertificatePath + `
(a workload certificate, <= 10 minutes, for a request the node signed), POST ` + trust.NodeLogPath + `
(a dsse entry in this factory's transparency log) and POST ` + trust.NodeTimestampPath + ` (an RFC 3161
timestamp). A node that is revoked (ssf node revoke), unknown, or outside its scope is refused (401/403 with
{"error": why}). The transparency log is opened while nodes append to it, taking turns with identity builds on
this home (a node's append waits up to 30 s for a local build, then gets 503).

Limits: 128 connections per client address, 4096 in all; headers within 10 s, bodies within 30 s (a join 16 KiB,
a certificate or timestamp request 64 KiB, a log request 4 MiB), answers within 60 s.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, err := listenAddr(addr, "127.0.0.1:8442")
			if err != nil {
				return err
			}
			if host == "" {
				return usagef("--addr %q: name the host (its certificate is made for it), for example 127.0.0.1:8442", addr)
			}
			h, err := home()
			if err != nil {
				return err
			}
			cert, pin, err := h.JoinServerCertificate(append([]string{host}, names...))
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			tlsConfig := trust.NodeServerTLS(cert)
			handler, closeLog, err := h.NodeServer(func(format string, a ...any) { logger.Info(fmt.Sprintf(format, a...)) })
			if err != nil {
				return err
			}
			defer closeLog()
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: logReadHeaderTimeout, ReadTimeout: logReadTimeout,
				WriteTimeout: logWriteTimeout, IdleTimeout: logIdleTimeout, MaxHeaderBytes: 64 << 10, TLSConfig: tlsConfig,
				ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %q: %w", addr, err)
			}
			ln = tls.NewListener(registry.LimitListener(ln, registry.DefaultMaxConnsPerClient, registry.DefaultMaxConns), tlsConfig)
			logger.Info("node join serving", "url", "https://"+ln.Addr().String(), "ca_cert_hash", pin)
			return serveUntilDone(cmd.Context(), srv, ln, logger, "node join server")
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8442", "address to listen on (HOST:PORT)")
	cmd.Flags().StringSliceVar(&names, "name", nil, "another host name or address nodes dial (repeatable)")
	return cmd
}

func newNodeListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [--output json]",
		Short: "List the factory's nodes: name, SPIFFE ID, joined, expires, revoked, scope",
		Long: `List the nodes of the factory whose CA this home holds: its own node (made at ssf init) first, then
every node that joined (ssf node join), by name, with its SPIFFE ID, when it joined, when its certificate
expires, when it was revoked (ssf node revoke; "-" if not) and the pipelines it may sign for ("*": all).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return usagef("--output %q: want text or json", output)
			}
			h, err := home()
			if err != nil {
				return err
			}
			nodes, err := h.Nodes()
			if err != nil {
				return err
			}
			if output == "json" {
				if nodes == nil {
					nodes = []*trust.NodeRecord{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(nodes)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSPIFFE ID\tJOINED\tEXPIRES\tREVOKED\tPIPELINES")
			for _, n := range nodes {
				revoked, scope := "-", "*"
				if n.Revoked != nil {
					revoked = n.Revoked.Format(time.RFC3339)
				}
				if len(n.Pipelines) > 0 {
					scope = strings.Join(n.Pipelines, ",")
				}
				name := n.Name
				if n.Own {
					name += " (factory)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, n.SPIFFEID, n.JoinedAt.Format(time.RFC3339), n.Expires.Format(time.RFC3339), revoked, scope)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func newNodeRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a node that joined: the node API refuses it from now on",
		Long: `Revoke the node NAME (as ssf node list shows it) on the factory that holds the CA: from now on ssf node
serve refuses every node API request made with its certificate (403), so it gets no workload certificate, log
entry or timestamp; a running server sees it at the node's next request. Bundles the node made before stay
valid (their certificates were valid when they were logged). The name stays taken. The factory's own node cannot
be revoked. Revoking a revoked node changes nothing (exit 0).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			done, err := h.RevokeNode(a[0])
			if err != nil {
				return err
			}
			if done {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked node %s\n", a[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "node %s was revoked already\n", a[0])
			}
			return nil
		},
	}
}
