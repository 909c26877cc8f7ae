package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/trust"
)

func newNodeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Add nodes (machines that run tasks) to the factory's CA",
	}
	c.AddCommand(newNodeTokenCmd(), newNodeJoinCmd())
	return c
}

func newNodeTokenCmd() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token [--ttl 15m]",
		Short: "Print a one-time token a new node joins this factory's CA with",
		Long: `Print a one-time token for ssf node join, on the factory that holds the CA.

The token is random (256 bits) and names the trust domain: ssfjoin1.TD.SECRET. Only its sha256 is stored,
with its expiry, under $SSF_HOME/node-tokens/ (0600). It admits one node, once, before it expires (--ttl,
between 1m and 24h, default 15m). Treat it as a secret until it is used: whoever holds it can join a node.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < trust.MinTokenTTL || ttl > trust.MaxTokenTTL {
				return usagef("--ttl %v: a token lives between %v and %v", ttl, trust.MinTokenTTL, trust.MaxTokenTTL)
			}
			h, err := home()
			if err != nil {
				return err
			}
			tok, exp, err := h.NodeToken(ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "one-time join token, valid until %s: on the new node run\n  SSF_HOME=NEW_HOME ssf node join --ca-home %s --token TOKEN\n", exp.Format(time.RFC3339), h.Dir)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", trust.DefaultTokenTTL, "how long the token stays valid (1m to 24h)")
	return cmd
}

func newNodeJoinCmd() *cobra.Command {
	var caHome, token, tokenFile, host string
	cmd := &cobra.Command{
		Use:   "join --ca-home DIR --token TOKEN|--token-file FILE [--host NAME]",
		Short: "Make this home a node of another factory's CA, with a one-time token",
		Long: `Join this factory home ($SSF_HOME, a new one) to the CA of the factory at --ca-home as a node:

  1. make this node's key, keys/node.key (ECDSA P-256, 0600), unless a failed join left one;
  2. send the CA a join request: the token, this node's host name and public key, signed by the key;
  3. the CA checks the request and the token (unused, unexpired, of its trust domain), spends the token and
     issues spiffe://TD/node/<host> for the key (1 year, clientAuth);
  4. check the certificate (this key, this name, chaining to the CA's root) and write keys/node.crt and
     keys/ca-root.crt.

The node's certificate then signs its requests for workload certificates, which the CA grants as it does its own
node's. The request travels in-process: --ca-home must be a directory this user can read and write (the CA's
home on this host, or mounted). There is no network transport yet.

A home that already has a node certificate or a CA of its own is refused. After ssf trust rotate on the CA, join
again with a new token (into a new home): the new intermediate does not accept certificates of the old one.

Exit status 2 for a refused join (a used, expired, unknown or foreign token, a malformed request).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caHome == "" || (token == "") == (tokenFile == "") {
				return usagef("--ca-home and one of --token and --token-file are required")
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
			abs, err := filepath.Abs(caHome)
			if err != nil {
				return usagef("--ca-home %q: %v", caHome, err)
			}
			if abs == h.Dir {
				return usagef("--ca-home %q is this home: a joining node needs a home of its own (set SSF_HOME to a new directory)", caHome)
			}
			ca := &factory.Home{Dir: abs}
			id, err := h.JoinNode(token, host, ca.AdmitNode)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "joined as %s\n", id)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caHome, "ca-home", "", "the factory home holding the CA (its $SSF_HOME)")
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
