package pipeline

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sigsign "github.com/sigstore/sigstore-go/pkg/sign"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"
)

// A signed pipeline has its signature beside it, FILE + SignatureSuffix: a Sigstore bundle v0.3 holding a message
// signature over the file's bytes, as `cosign sign-blob --bundle` writes (hashedrekord style), with no log entry
// and no certificate. Its verification material is a public key hint, and ssf's hint is the signing key's PKIX DER
// public key, base64: the hint is unauthenticated, so all it does is say which key to try; that key's signature
// over these exact bytes is what proves the key signed them, and its fingerprint is what a policy trusts or not
// (ssf.build's input.pipeline.signers). Signing and verifying here are pure: callers read and write the files.

// SignatureSuffix names a pipeline file's signature: ssf.yaml's is ssf.yaml.sig.
const SignatureSuffix = ".sig"

// MaxSignatureBytes bounds a signature file: a bundle with one key and one signature is under 1 KiB.
const MaxSignatureBytes = 64 << 10

// Fingerprint names a public key as policies do: "sha256:<hex of its PKIX DER encoding>".
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ParseSigningKey decodes a PEM private key that can sign pipelines: ECDSA P-256 ("EC PRIVATE KEY", or "PRIVATE
// KEY" in PKCS #8) or Ed25519 ("PRIVATE KEY"). Encrypted keys (cosign's) are refused, saying so.
func ParseSigningKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found: want an unencrypted ECDSA P-256 or Ed25519 private key in PEM")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY":
		return nil, fmt.Errorf("the key is encrypted (PEM %q): give an unencrypted ECDSA P-256 or Ed25519 key, e.g. one made by `ssf keys generate` or `openssl genpkey -algorithm ed25519`", block.Type)
	default:
		return nil, fmt.Errorf("PEM block is %q, want a private key (\"EC PRIVATE KEY\" or \"PRIVATE KEY\")", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	return signingKey(key)
}

func signingKey(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("the ECDSA key is on curve %s; pipelines are signed with P-256 or Ed25519", k.Curve.Params().Name)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("a %T cannot sign pipelines: use ECDSA P-256 or Ed25519", key)
}

// algorithm is the Sigstore algorithm a key signs with: ECDSA P-256 with SHA-256, or Ed25519ph (SHA-512), which
// Sigstore uses for message signatures (hashedrekord).
func algorithm(pub crypto.PublicKey) (protocommon.PublicKeyDetails, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256, nil
		}
	case ed25519.PublicKey:
		return protocommon.PublicKeyDetails_PKIX_ED25519_PH, nil
	}
	return 0, fmt.Errorf("a %T key cannot sign pipelines: use ECDSA P-256 or Ed25519", pub)
}

// keypair is sigstore-go's sign.Keypair over a key held in memory.
type keypair struct {
	key  crypto.Signer
	alg  signature.AlgorithmDetails
	hint []byte
}

var _ sigsign.Keypair = (*keypair)(nil)

func newKeypair(key crypto.Signer) (*keypair, error) {
	details, err := algorithm(key.Public())
	if err != nil {
		return nil, err
	}
	alg, err := signature.GetAlgorithmDetails(details)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding the public key: %w", err)
	}
	return &keypair{key: key, alg: alg, hint: []byte(base64.StdEncoding.EncodeToString(der))}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.key.Public() }

func (k *keypair) GetKeyAlgorithm() string {
	if k.alg.GetKeyType() == signature.ED25519 {
		return "ED25519"
	}
	return "ECDSA"
}

func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.key.Public())
	return string(b), err
}

// SignData signs the digest of data (SHA-256 for ECDSA, SHA-512 for Ed25519ph) and returns the signature and the
// digest, which the bundle records.
func (k *keypair) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	hf := k.alg.GetHashType()
	var digest []byte
	switch hf {
	case crypto.SHA256:
		s := sha256.Sum256(data)
		digest = s[:]
	case crypto.SHA512:
		s := sha512.Sum512(data)
		digest = s[:]
	default:
		return nil, nil, fmt.Errorf("unexpected hash %v", hf)
	}
	sig, err := k.key.Sign(rand.Reader, digest, hf) // Ed25519 with crypto.SHA512 is Ed25519ph
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w", err)
	}
	return sig, digest, nil
}

// Sign signs data, a pipeline file's bytes, with key and returns the signature bundle (JSON) to write beside it.
// The bundle is verified before it is returned.
func Sign(ctx context.Context, data []byte, key crypto.Signer) ([]byte, error) {
	kp, err := newKeypair(key)
	if err != nil {
		return nil, err
	}
	b, err := sigsign.Bundle(&sigsign.PlainData{Data: data}, kp, sigsign.BundleOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("signing the pipeline: %w", err)
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding the signature bundle: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil { // protojson varies its whitespace on purpose
		return nil, fmt.Errorf("encoding the signature bundle: %w", err)
	}
	buf.WriteByte('\n')
	if _, err := VerifySignature(data, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("checking the signature just made: %w", err)
	}
	return buf.Bytes(), nil
}

// VerifySignature checks that bundleJSON is a valid signature over data by the key its hint names, and returns
// that key's fingerprint. Any error means the signature does not hold: a caller must not take data as signed.
func VerifySignature(data, bundleJSON []byte) (string, error) {
	if len(bundleJSON) > MaxSignatureBytes {
		return "", fmt.Errorf("the signature is larger than %d bytes", MaxSignatureBytes)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return "", fmt.Errorf("reading the signature bundle: %w", err)
	}
	if b.GetMessageSignature() == nil {
		return "", errors.New("the bundle holds no message signature (a DSSE attestation is not a signature over the file): sign with `ssf pipeline sign`")
	}
	pk := b.GetVerificationMaterial().GetPublicKey()
	if pk == nil {
		return "", errors.New("the bundle names no public key (a certificate or nothing): sign with `ssf pipeline sign`")
	}
	der, err := base64.StdEncoding.DecodeString(pk.GetHint())
	if err != nil {
		return "", fmt.Errorf("the bundle's key hint is not a public key (ssf pipeline sign writes the key itself there; a cosign bundle names a key only by its hash): %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return "", fmt.Errorf("the bundle's key hint is not a public key (ssf pipeline sign writes the key itself there; a cosign bundle names a key only by its hash): %w", err)
	}
	if _, err := algorithm(pub); err != nil {
		return "", err
	}
	var lopts []signature.LoadOption
	if _, ok := pub.(ed25519.PublicKey); ok {
		lopts = append(lopts, options.WithED25519ph()) // message signatures use Ed25519ph, as hashedrekord does
	}
	v, err := signature.LoadVerifierWithOpts(pub, lopts...)
	if err != nil {
		return "", fmt.Errorf("loading the public key: %w", err)
	}
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	trusted := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	verifier, err := sgverify.NewVerifier(trusted, sgverify.WithNoObserverTimestamps())
	if err != nil {
		return "", fmt.Errorf("configuring sigstore-go: %w", err)
	}
	if _, err := verifier.Verify(&b, sgverify.NewPolicy(sgverify.WithArtifact(bytes.NewReader(data)), sgverify.WithKey())); err != nil {
		return "", fmt.Errorf("the signature does not verify over the file's bytes: %w", err)
	}
	return Fingerprint(pub)
}
