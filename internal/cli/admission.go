package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/admission"
	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/policy"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

func newAdmissionCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "admission",
		Short: "Kubernetes admission webhook: only images the factory verifiably built run (serve, install)",
		Long: `A validating and mutating admission webhook for Kubernetes (AdmissionReview v1). The mutating webhook
resolves every image tag to its digest; the validating webhook admits an image only when it carries factory
provenance that verifies with the factory's trust and passes the ssf.deploy policy, per container. Namespaces
opt in with the label ssf.dev/admission=enforce (deny) or =warn (admit with warnings). See docs/admission.md.`,
	}
	c.AddCommand(newAdmissionServeCmd(), newAdmissionInstallCmd())
	return c
}

// admissionTrustFlags say what images are verified with: --key, --trusted-root with an identity, or the local
// factory's trust.
type admissionTrustFlags struct {
	key string
	idf identityFlags
}

// admissionTrustFiles is where the trust is read from, so that a change can be noticed and read again.
type admissionTrustFiles struct {
	key, trustedRoot string
	id               verify.Identity
	fromHome         bool // the local factory's key: read from its private key file
	rootFromHome     bool // the local factory's trusted root
}

// files works out which files hold the trust: the flags, else the local factory's provenance key and, when it
// has one, its trusted root with its pipelines' identity (spiffe://TD/pipeline/NAME and its issuer).
func (f *admissionTrustFlags) files() (admissionTrustFiles, error) {
	out := admissionTrustFiles{key: f.key, trustedRoot: f.idf.trustedRoot, id: f.idf.id}
	if f.idf.trustedRoot != "" && f.idf.id.SAN == "" && f.idf.id.SANRegexp == "" {
		return out, usagef("--trusted-root needs --certificate-identity or --certificate-identity-regexp (e.g. '^spiffe://TD/pipeline/[a-z0-9][a-z0-9_-]*$') and --certificate-oidc-issuer: the identity a build's certificate must name")
	}
	if f.idf.trustedRoot == "" && f.idf.id != (verify.Identity{}) {
		return out, usagef("--certificate-identity and --certificate-oidc-issuer go with --trusted-root")
	}
	if f.key != "" || f.idf.trustedRoot != "" {
		return out, nil
	}
	h, err := home()
	if err != nil {
		return out, err
	}
	cfg, err := h.Config()
	if err != nil {
		return out, fmt.Errorf("no --key or --trusted-root given, and the local factory's trust cannot be read: %w", err)
	}
	out.key, out.fromHome = h.KeyPath(), true
	if _, err := h.TrustedRoot(); err == nil {
		out.rootFromHome = true
		out.id = pipelinesIdentity(cfg) // verify_identity.go
	} else if !errors.Is(err, fs.ErrNotExist) {
		return out, err
	}
	return out, nil
}

// load reads the trust from its files.
func (t admissionTrustFiles) load() (*admission.Trust, error) {
	var keyPEM, rootJSON []byte
	var err error
	switch {
	case t.fromHome:
		key, err := sign.LoadKey(t.key)
		if err != nil {
			return nil, fmt.Errorf("reading the local factory's provenance key: %w", err)
		}
		if keyPEM, err = sign.PublicKeyPEM(key.Public()); err != nil {
			return nil, err
		}
	case t.key != "":
		if keyPEM, err = readBounded(t.key, maxPublicKey, "a PEM public key"); err != nil {
			return nil, usagef("--key: %w", err)
		}
	}
	switch {
	case t.rootFromHome:
		h, err := home()
		if err != nil {
			return nil, err
		}
		if rootJSON, err = h.TrustedRoot(); err != nil {
			return nil, fmt.Errorf("reading the local factory's trusted root: %w", err)
		}
	case t.trustedRoot != "":
		if rootJSON, err = readBounded(t.trustedRoot, maxTrustedRoot, "a Sigstore trusted root"); err != nil {
			return nil, usagef("--trusted-root: %w", err)
		}
	}
	tr, err := admission.NewTrust(keyPEM, rootJSON, t.id)
	if err != nil {
		return nil, usagef("%w", err)
	}
	return tr, nil
}

func newAdmissionServeCmd() *cobra.Command {
	var addr, certFile, keyFile string
	var tf admissionTrustFlags
	var policyDir *string
	var reload, requestTimeout, ttl, negTTL time.Duration
	var cacheSize int
	var reg registryFlags
	cmd := &cobra.Command{
		Use:   "serve --tls-cert CERT --tls-key KEY [--addr 127.0.0.1:8443] [--policy DIR] [--key KEY.pub | --trusted-root TR --certificate-identity-regexp RE --certificate-oidc-issuer ISS]",
		Short: "Serve the admission webhook (AdmissionReview v1 at /mutate/{enforce,warn} and /validate/{enforce,warn})",
		Long: `Serve the admission webhook over HTTPS until Ctrl-C (or SIGTERM): POST /mutate/enforce, /mutate/warn,
/validate/enforce, /validate/warn (/mutate and /validate alone mean enforce), and GET /healthz.

/mutate resolves every container image and image volume named by tag to the digest its registry holds for it
now (a JSONPatch).
/validate requires every image to carry factory provenance that verifies and to pass the ssf.deploy policy, per
container; an image named by tag alone is denied (/mutate pins tags first). In enforce mode a failure denies,
naming the container, the image and the check; in warn mode the object is admitted with a warning per failure.
Any error denies (fail closed).

Trust: --key KEY.pub (a key-signed factory), --trusted-root TR with --certificate-identity[-regexp] and
--certificate-oidc-issuer[-regexp] (keyless builds), or both. Without either, the local factory's: its provenance
key and, when it has one, its trusted root with its pipelines' identity. Policy: --policy DIR, else
$SSF_HOME/policy, else the default set built into ssf. Trust and policy files are read again every --reload
interval; a change applies to later reviews, and a set or trust that no longer loads is logged
and the last good one kept.

Verified evidence is cached per image digest and trust (--cache-size images, --cache-ttl when provenance
verified, --cache-negative-ttl when it did not). Verification is offline: the only requests go to the image's
registry (credentials from the Docker config file; plain HTTP only to loopback). Install the webhook
configurations with ssf admission install. Exit status 2 for bad flags.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := listenAddr(addr, "127.0.0.1:8443"); err != nil {
				return err
			}
			if certFile == "" || keyFile == "" {
				return usagef("--tls-cert and --tls-key are required: the API server calls webhooks over HTTPS only")
			}
			if reload <= 0 || requestTimeout <= 0 || cacheSize <= 0 || ttl < 0 || negTTL < 0 {
				return usagef("--reload, --request-timeout and --cache-size must be positive, --cache-ttl and --cache-negative-ttl not negative")
			}
			certs, err := newCertReloader(certFile, keyFile)
			if err != nil {
				return usagef("loading --tls-cert %q and --tls-key %q: %v", certFile, keyFile, err)
			}
			files, err := tf.files()
			if err != nil {
				return err
			}
			trust, err := files.load()
			if err != nil {
				return err
			}
			pol, err := loadPolicy(cmd.Context(), *policyDir)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if reg.timeout <= 0 {
				return usagef("--timeout must be positive (got %s)", reg.timeout)
			}
			h, err := admission.New(trust, pol.Set, admission.WithLogger(logger), admission.WithCache(cacheSize, ttl, negTTL),
				admission.WithRequestTimeout(requestTimeout), admission.WithRegistryOptions(oci.WithTimeout(reg.timeout)))
			if err != nil {
				return &usageError{err}
			}
			srv := &http.Server{
				Handler:           http.MaxBytesHandler(h, admission.MaxReviewBytes+1),
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       requestTimeout + 5*time.Second,
				WriteTimeout:      requestTimeout + 5*time.Second,
				IdleTimeout:       90 * time.Second,
				MaxHeaderBytes:    64 << 10,
				TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get},
				ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %q: %w", addr, err)
			}
			ln = tls.NewListener(ln, srv.TLSConfig)
			logger.Info("admission webhook serving", "url", "https://"+ln.Addr().String(), "trust", trust.Digest,
				"policy", pol.Source, "policy_digest", pol.Set.Digest())
			go watchAdmissionFiles(cmd.Context(), logger, h, files, trust, pol, certs, reload)
			return serveUntilDone(cmd.Context(), srv, ln, logger, "admission webhook")
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8443", "address to listen on (HOST:PORT); in a cluster 0.0.0.0:8443")
	f.StringVar(&certFile, "tls-cert", "", "TLS serving certificate chain (PEM), signed by the CA given to ssf admission install; read again when it changes")
	f.StringVar(&keyFile, "tls-key", "", "TLS private key (PEM)")
	f.StringVar(&tf.key, "key", "", "trust bundles signed by this public key (PEM, from: ssf keys public)")
	tf.idf.add(cmd) // --trusted-root and the --certificate-* flags, as ssf verify takes them
	policyDir = addPolicyFlag(cmd)
	f.DurationVar(&reload, "reload", 10*time.Second, "read the trust, policy and TLS files again this often")
	f.DurationVar(&requestTimeout, "request-timeout", admission.DefaultRequestTimeout, "deny a review not decided within this long (keep under the webhook's timeoutSeconds)")
	f.IntVar(&cacheSize, "cache-size", admission.DefaultCacheSize, "images whose verified evidence is cached")
	f.DurationVar(&ttl, "cache-ttl", admission.DefaultTTL, "how long the evidence of an image whose provenance verified is cached")
	f.DurationVar(&negTTL, "cache-negative-ttl", admission.DefaultNegativeTTL, "how long a failed verification is cached (0: not cached)")
	f.DurationVar(&reg.timeout, "timeout", oci.DefaultTimeout, "fail when a registry sends or accepts nothing for this long")
	return cmd
}

// watchAdmissionFiles reads the trust, the policy and the TLS files again every interval, and hands what changed
// to the handler. A file that no longer loads is logged; the last good one stays in use. (Not on SIGHUP: ssf's
// main ends every command on SIGHUP, as a closed terminal should, so polling is the one way; the policy's digest
// and the trust's are compared, not modification times, which a ConfigMap update or a coarse clock may not move.)
func watchAdmissionFiles(ctx context.Context, logger *slog.Logger, h *admission.Handler, files admissionTrustFiles, trust *admission.Trust, pol *factory.Policy, certs *certReloader, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if t, err := files.load(); err != nil {
			logger.Error("reading the trust again failed; the last good trust stays in use", "error", err)
		} else if t.Digest != trust.Digest {
			trust = t
			h.SetTrust(t)
			logger.Info("trust changed", "trust", t.Digest)
		}
		if pol.Source != factory.DefaultPolicySource {
			if now, err := policy.ReadDir(pol.Source); err != nil {
				logger.Error("reading the policy again failed; the last good set stays in use", "error", err)
			} else if policy.Digest(now) != pol.Set.Digest() {
				if p, err := factory.LoadPolicy(ctx, pol.Source); err != nil {
					logger.Error("the changed policy set does not load; the last good set stays in use", "error", err)
				} else {
					pol = p
					h.SetPolicy(p.Set)
					logger.Info("policy changed", "policy", p.Source, "policy_digest", p.Set.Digest())
				}
			}
		}
		if err := certs.reload(); err != nil {
			logger.Error("reading the TLS certificate again failed; the last good one stays in use", "error", err)
		}
	}
}

// certReloader serves the TLS key pair, read again by reload when the files changed.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             string
}

// maxTLSFile bounds --tls-cert and --tls-key: a chain of a few certificates is a few KiB.
const maxTLSFile = 1 << 20

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile}
	return c, c.reload()
}

func (c *certReloader) reload() error {
	stamp := ""
	for _, p := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		stamp += fmt.Sprintf("%s %d %d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	c.mu.Lock()
	same := stamp == c.stamp
	c.mu.Unlock()
	if same {
		return nil
	}
	// Read bounded and never blocking on a fifo (tls.LoadX509KeyPair reads any file whole, and waits on a fifo).
	certPEM, err := readBounded(c.certFile, maxTLSFile, "a TLS certificate chain")
	if err != nil {
		return err
	}
	keyPEM, err := readBounded(c.keyFile, maxTLSFile, "a TLS private key")
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cert, c.stamp = &cert, stamp
	c.mu.Unlock()
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

func newAdmissionInstallCmd() *cobra.Command {
	var url, service, caFile string
	var timeout int
	cmd := &cobra.Command{
		Use:   "install (--url https://HOST[:PORT] | --service NAMESPACE/NAME[:PORT]) --ca-file CA.pem [--timeout-seconds 10]",
		Short: "Print the MutatingWebhookConfiguration and ValidatingWebhookConfiguration for ssf admission serve",
		Long: `Print, as YAML for kubectl apply -f -, the MutatingWebhookConfiguration and the
ValidatingWebhookConfiguration that send Pods, ReplicationControllers, Deployments, StatefulSets, DaemonSets,
ReplicaSets, Jobs and CronJobs (CREATE and UPDATE, ephemeral containers too) of opted-in namespaces to the
webhook at --url (or, in the cluster, the Service --service: the API server resolves it itself), trusting
--ca-file (the CA that signed its --tls-cert).

Each configuration has two webhooks: one for namespaces labelled ssf.dev/admission=enforce, or with any
value but warn (a misspelt value enforces; only no label opts out) (URL/mutate/enforce, URL/validate/enforce;
failurePolicy Fail: a webhook that does not answer denies) and one for ssf.dev/admission=warn (.../warn; failurePolicy Ignore: warn mode never blocks). sideEffects None,
admissionReviewVersions [v1], matchPolicy Equivalent; the mutating one has reinvocationPolicy IfNeeded.
Label a namespace with: kubectl label namespace NS ssf.dev/admission=enforce`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (url == "") == (service == "") || caFile == "" {
				return usagef("--ca-file and one of --url or --service are required")
			}
			ca, err := readBounded(caFile, 1<<20, "a PEM CA certificate")
			if err != nil {
				return usagef("--ca-file: %w", err)
			}
			var out []byte
			if url != "" {
				out, err = admission.Configurations(url, ca, timeout)
			} else {
				var svc admission.Service
				ns, rest, _ := strings.Cut(service, "/")
				name, port, hasPort := strings.Cut(rest, ":")
				svc.Namespace, svc.Name = ns, name
				if hasPort {
					if svc.Port, err = strconv.Atoi(port); err != nil {
						return usagef("--service %q: the port is not a number", service)
					}
				}
				out, err = admission.ServiceConfigurations(svc, ca, timeout)
			}
			if err != nil {
				return &usageError{err}
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "url", "", "the webhook's base URL as the API server reaches it: https://HOST[:PORT][/PATH]")
	f.StringVar(&service, "service", "", "or the in-cluster Service in front of it: NAMESPACE/NAME[:PORT] (port 443 by default)")
	f.StringVar(&caFile, "ca-file", "", "the CA certificate (PEM) that signed the webhook's serving certificate")
	f.IntVar(&timeout, "timeout-seconds", 10, "how long the API server waits for the webhook (1 to 30)")
	return cmd
}
