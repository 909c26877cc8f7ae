// Package home is the one place that knows the layout of a factory's state directory, $SSF_HOME (default ~/.ssf):
//
//	config.yaml               the factory's configuration
//	keys/provenance.key       the provenance signing key (0600)
//	keys/secrets.key          the key the secret store is encrypted with (0600; made on first `ssf secret set`)
//	keys/ca-root.key          the factory CA's root key (0600; may be moved offline after init: docs/keyless.md)
//	keys/ca-root.crt          the factory CA's root certificate
//	keys/ca-intermediate.key  the factory CA's intermediate key, which issues node and workload certificates (0600)
//	keys/ca-intermediate.crt  the intermediate's certificate, signed by the root
//	keys/ctlog.key            the certificate-transparency log key that signs the SCTs embedded in certificates (0600)
//	keys/tlog.key             the transparency log's signing key: checkpoints and SETs (ECDSA P-256 PKCS#8 PEM, 0600)
//	keys/tsa.key              the RFC 3161 timestamp authority's key (0600)
//	keys/tsa.crt              the timestamp authority's certificate (EKU timeStamping), signed by the CA root
//	keys/node.key             this node's key: it signs requests for workload certificates (0600)
//	keys/node.crt             this node's certificate, spiffe://TD/node/<host>
//	keys/retired/<end>/       what `ssf trust rotate` retired: the old intermediate's certificate, the old log's public key, and when they ended
//	node-tokens/<sha256>      one-time `ssf node join` tokens, stored hashed with their expiry (0600, in a 0700 directory)
//	secrets/NAME.json         each secret, AES-256-GCM under keys/secrets.key (0600, in a 0700 directory)
//	images/                   builder images, an OCI image layout
//	cache/rootfs/<digest>/    unpacked, read-only builder root file systems
//	cache/deps/               downloaded dependencies, named by their pins (go.sum h1, npm sha512, sha256)
//	cache/tasks/<key>/        task caches (docs/caches.md): cache.tar, its record and lock, one per pipeline, task, name and builder
//	log/                      the transparency log (docs/transparency-log.md)
//	log-<keyid>/              a transparency log retired by `ssf trust rotate` (read-only, still verifiable)
//	log.lock                  held by the identity build that appends to the log; the next one waits (docs/keyless.md)
//	runc/                     the OCI runtime's state
//	runs/<invocation>.json    a locked record of each running build
//	builds/<invocation>/      the history of each build: build.json, its task logs, and (on success) its bundles (0700)
//	registry/                 the embedded registry's blobs, repositories and users
//	policy/                   the Rego policy set of the factory's gates (`ssf policy init` writes the default; docs/policy.md)
//
// State shared by every factory home on a host (uid leases, task slots) lives under /run/ssf instead, so that two
// homes never hand out the same uid.
//
// # What it must never do
//
// It must never name a path outside Dir, and never create, read or change anything: it only says where things are,
// so every package that touches factory state asks here rather than joining names of its own.
package home

import (
	"fmt"
	"os"
	"path/filepath"
)

// Layout is a factory home: Dir is its absolute path.
type Layout struct {
	Dir string
}

// Default returns $SSF_HOME (made absolute), or ~/.ssf.
func Default() (Layout, error) {
	if dir := os.Getenv("SSF_HOME"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return Layout{}, fmt.Errorf("finding the factory home %q: %w", dir, err)
		}
		return Layout{Dir: abs}, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return Layout{}, fmt.Errorf("finding the factory home: %w (set SSF_HOME)", err)
	}
	return Layout{Dir: filepath.Join(home, ".ssf")}, nil
}

// Config is config.yaml.
func (l Layout) Config() string { return filepath.Join(l.Dir, "config.yaml") }

// Key is the provenance signing key.
func (l Layout) Key() string { return filepath.Join(l.Dir, "keys", "provenance.key") }

// Log is the transparency log's directory: the C2SP tlog-tiles files tessera writes (servable as they are) and
// the log's own state in .ssf/.
func (l Layout) Log() string { return filepath.Join(l.Dir, "log") }

// LogTurn is the lock file an identity build holds while it appends to the transparency log (which admits one
// appender): the next identity build waits on it for its turn instead of failing.
func (l Layout) LogTurn() string { return filepath.Join(l.Dir, "log.lock") }

// TLogKey is the transparency log's signing key (ECDSA P-256, PKCS#8 PEM): it signs checkpoints and SETs.
func (l Layout) TLogKey() string { return filepath.Join(l.Dir, "keys", "tlog.key") }

// CARootKey is the factory CA's root key; the factory needs it only at init and rotation.
func (l Layout) CARootKey() string { return filepath.Join(l.Dir, "keys", "ca-root.key") }

// CARootCert is the factory CA's root certificate (PEM).
func (l Layout) CARootCert() string { return filepath.Join(l.Dir, "keys", "ca-root.crt") }

// CAIntermediateKey is the key of the intermediate CA that issues node and workload certificates.
func (l Layout) CAIntermediateKey() string {
	return filepath.Join(l.Dir, "keys", "ca-intermediate.key")
}

// CAIntermediateCert is the intermediate CA's certificate (PEM), signed by the root.
func (l Layout) CAIntermediateCert() string {
	return filepath.Join(l.Dir, "keys", "ca-intermediate.crt")
}

// CTLogKey is the certificate-transparency log key that signs the SCTs embedded in issued certificates.
func (l Layout) CTLogKey() string { return filepath.Join(l.Dir, "keys", "ctlog.key") }

// TSAKey is the RFC 3161 timestamp authority's signing key.
func (l Layout) TSAKey() string { return filepath.Join(l.Dir, "keys", "tsa.key") }

// TSACert is the timestamp authority's certificate (PEM).
func (l Layout) TSACert() string { return filepath.Join(l.Dir, "keys", "tsa.crt") }

// NodeKey is this node's key, which signs its requests for workload certificates.
func (l Layout) NodeKey() string { return filepath.Join(l.Dir, "keys", "node.key") }

// NodeCert is this node's certificate (PEM), spiffe://TD/node/<host>.
func (l Layout) NodeCert() string { return filepath.Join(l.Dir, "keys", "node.crt") }

// RetiredTrust holds one directory per `ssf trust rotate`: the intermediate certificate and log key it retired.
func (l Layout) RetiredTrust() string { return filepath.Join(l.Dir, "keys", "retired") }

// LogArchive is where `ssf trust rotate` moves the log whose key has log ID prefix keyID (hex).
func (l Layout) LogArchive(keyID string) string { return filepath.Join(l.Dir, "log-"+keyID) }

// NodeTokens holds the hashes of the one-time tokens nodes join with (`ssf node token`).
func (l Layout) NodeTokens() string { return filepath.Join(l.Dir, "node-tokens") }

// NodeHosts holds, on a factory, the certificate (and pipeline scope) of every node that joined, one file per name.
func (l Layout) NodeHosts() string { return filepath.Join(l.Dir, "node-hosts") }

// NodeRevoked holds, on a factory, a record of every node revoked (`ssf node revoke`), one file per name.
func (l Layout) NodeRevoked() string { return filepath.Join(l.Dir, "node-revoked") }

// Joined is where a node's home records the factory it joined (`ssf node join`).
func (l Layout) Joined() string { return filepath.Join(l.Dir, "joined.json") }

// FactoryTrustedRoot is where a joined node keeps the last trusted root its factory sent.
func (l Layout) FactoryTrustedRoot() string { return filepath.Join(l.Dir, "factory-trusted-root.json") }

// SecretsKey is the key the secret store is encrypted with; only the control plane reads it.
func (l Layout) SecretsKey() string { return filepath.Join(l.Dir, "keys", "secrets.key") }

// Secrets is the secret store: one encrypted file per secret.
func (l Layout) Secrets() string { return filepath.Join(l.Dir, "secrets") }

// Images is the builder image store.
func (l Layout) Images() string { return filepath.Join(l.Dir, "images") }

// RootfsCache holds unpacked builder root file systems, one directory per image digest.
func (l Layout) RootfsCache() string { return filepath.Join(l.Dir, "cache", "rootfs") }

// DepsCache holds downloaded dependencies by the digest that pins them; only the control plane writes it.
func (l Layout) DepsCache() string { return filepath.Join(l.Dir, "cache", "deps") }

// TaskCaches holds the caches tasks declare, one directory per cache key (pipeline, task, cache name, builder);
// only the control plane reads and writes it, and only as tar streams.
func (l Layout) TaskCaches() string { return filepath.Join(l.Dir, "cache", "tasks") }

// RuntimeState is the OCI runtime's state directory (runc --root).
func (l Layout) RuntimeState() string { return filepath.Join(l.Dir, "runc") }

// Runs holds the locked records of running builds.
func (l Layout) Runs() string { return filepath.Join(l.Dir, "runs") }

// Builds holds the history of every build, one directory per invocation id, readable only by the factory's owner.
func (l Layout) Builds() string { return filepath.Join(l.Dir, "builds") }

// Registry is the embedded registry's storage.
func (l Layout) Registry() string { return filepath.Join(l.Dir, "registry") }

// Policy is the default policy directory: the Rego files of the gates (ssf.build, ssf.deps, ...).
func (l Layout) Policy() string { return filepath.Join(l.Dir, "policy") }
