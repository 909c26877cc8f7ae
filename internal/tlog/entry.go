package tlog

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	jsoncanonicalizer "github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// The entry kinds the log accepts, with the one API version of each (Rekor v1's).
const (
	KindDSSE         = "dsse"
	KindHashedRekord = "hashedrekord"
	APIVersion       = "0.0.1"
)

// MaxBodySize is the largest canonical entry body the log stores (the C2SP tlog-tiles limit of one entry).
const MaxBodySize = 1<<16 - 1

// ErrBadEntry is wrapped by every error about an entry that is malformed, unsupported, oversized or badly signed.
var ErrBadEntry = errors.New("bad log entry")

// Entry is a log entry ready to append: its kind and its canonical body. Make one with [NewDSSEEntry],
// [NewHashedRekordEntry] or [ParseEntry]; the zero Entry is refused by [Log.Append].
type Entry struct {
	kind string
	body []byte
}

// Kind is the entry's kind, [KindDSSE] or [KindHashedRekord].
func (e Entry) Kind() string { return e.kind }

// Body is the canonical entry body, the leaf of the Merkle tree.
func (e Entry) Body() []byte { return bytes.Clone(e.body) }

// The shapes below are Rekor's (pkg/types/{dsse,hashedrekord}/v0.0.1) as they appear in a canonical body.

type entryHeader struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Spec       json.RawMessage `json:"spec"`
}

type hashValue struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"value"`
}

type dsseSpec struct {
	EnvelopeHash hashValue       `json:"envelopeHash"`
	PayloadHash  hashValue       `json:"payloadHash"`
	Signatures   []dsseSignature `json:"signatures"`
}

type dsseSignature struct {
	Signature string `json:"signature"` // base64, as in the envelope
	Verifier  []byte `json:"verifier"`  // base64 of the PEM public key or certificate
}

type hashedRekordSpec struct {
	Data struct {
		Hash hashValue `json:"hash"`
	} `json:"data"`
	Signature struct {
		Content   []byte `json:"content"`
		PublicKey struct {
			Content []byte `json:"content"`
		} `json:"publicKey"`
	} `json:"signature"`
}

// envelope is a DSSE envelope as JSON carries it.
type envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

// NewDSSEEntry makes a `dsse` 0.0.1 entry for a DSSE envelope (its JSON, exactly as it will be published) signed
// by the given verifiers (each one PEM block: a public key or an X.509 certificate). Every signature must verify
// with one of the verifiers and every verifier must verify one signature, as Rekor requires.
func NewDSSEEntry(envelopeJSON []byte, verifiersPEM ...[]byte) (Entry, error) {
	var env envelope
	if err := json.Unmarshal(envelopeJSON, &env); err != nil {
		return Entry{}, fmt.Errorf("%w: parsing DSSE envelope: %w", ErrBadEntry, err)
	}
	if env.PayloadType == "" {
		return Entry{}, fmt.Errorf("%w: DSSE envelope has no payloadType", ErrBadEntry)
	}
	if len(env.Signatures) == 0 {
		return Entry{}, fmt.Errorf("%w: DSSE envelope has no signatures", ErrBadEntry)
	}
	if len(verifiersPEM) == 0 {
		return Entry{}, fmt.Errorf("%w: a DSSE entry needs at least one verifier (public key or certificate)", ErrBadEntry)
	}
	payload, err := decodeB64(env.Payload)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: DSSE payload is not base64: %w", ErrBadEntry, err)
	}
	pae := dssePAE(env.PayloadType, payload)

	type verifier struct {
		canonical []byte
		v         signature.Verifier
		used      bool
	}
	vs := make([]*verifier, 0, len(verifiersPEM))
	for i, p := range verifiersPEM {
		pub, canonical, err := parseVerifier(p)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: verifier %d: %w", ErrBadEntry, i, err)
		}
		v, err := signature.LoadDefaultVerifier(pub)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: verifier %d: %w", ErrBadEntry, i, err)
		}
		vs = append(vs, &verifier{canonical: canonical, v: v})
	}
	spec := dsseSpec{}
	for i, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: DSSE signature %d is not base64: %w", ErrBadEntry, i, err)
		}
		var match *verifier
		for _, v := range vs {
			if v.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pae)) == nil {
				match = v
				break
			}
		}
		if match == nil {
			return Entry{}, fmt.Errorf("%w: DSSE signature %d does not verify with any given verifier", ErrBadEntry, i)
		}
		match.used = true
		spec.Signatures = append(spec.Signatures, dsseSignature{Signature: s.Sig, Verifier: match.canonical})
	}
	for i, v := range vs {
		if !v.used {
			return Entry{}, fmt.Errorf("%w: verifier %d verifies none of the DSSE signatures", ErrBadEntry, i)
		}
	}
	slices.SortFunc(spec.Signatures, func(a, b dsseSignature) int { return strings.Compare(a.Signature, b.Signature) })
	ph := sha256.Sum256(payload)
	eh := sha256.Sum256(envelopeJSON)
	spec.PayloadHash = hashValue{Algorithm: "sha256", Value: hex.EncodeToString(ph[:])}
	spec.EnvelopeHash = hashValue{Algorithm: "sha256", Value: hex.EncodeToString(eh[:])}
	return newEntry(KindDSSE, spec)
}

// NewHashedRekordEntry makes a `hashedrekord` 0.0.1 entry: a signature over an artifact's digest (algorithm
// "sha256", "sha384" or "sha512"), with the public key or certificate (one PEM block) that verifies it.
func NewHashedRekordEntry(algorithm string, digest, sig, verifierPEM []byte) (Entry, error) {
	spec := hashedRekordSpec{}
	spec.Data.Hash = hashValue{Algorithm: algorithm, Value: hex.EncodeToString(digest)}
	spec.Signature.Content = sig
	spec.Signature.PublicKey.Content = verifierPEM
	canonical, err := checkHashedRekord(&spec)
	if err != nil {
		return Entry{}, err
	}
	spec.Signature.PublicKey.Content = canonical
	return newEntry(KindHashedRekord, spec)
}

// checkHashedRekord validates a hashedrekord spec and verifies its signature; it returns the canonical PEM of the
// verifier.
func checkHashedRekord(spec *hashedRekordSpec) ([]byte, error) {
	h, ok := map[string]crypto.Hash{"sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}[spec.Data.Hash.Algorithm]
	if !ok {
		return nil, fmt.Errorf("%w: hashedrekord digest algorithm %q is not supported (use sha256, sha384 or sha512)", ErrBadEntry, spec.Data.Hash.Algorithm)
	}
	digest, err := decodeLowerHex(spec.Data.Hash.Value, h.Size())
	if err != nil {
		return nil, fmt.Errorf("%w: hashedrekord %s digest: %w", ErrBadEntry, spec.Data.Hash.Algorithm, err)
	}
	if len(spec.Signature.Content) == 0 {
		return nil, fmt.Errorf("%w: hashedrekord has no signature", ErrBadEntry)
	}
	pub, canonical, err := parseVerifier(spec.Signature.PublicKey.Content)
	if err != nil {
		return nil, fmt.Errorf("%w: hashedrekord verifier: %w", ErrBadEntry, err)
	}
	v, err := signature.LoadVerifier(pub, h)
	if err != nil {
		return nil, fmt.Errorf("%w: hashedrekord verifier: %w", ErrBadEntry, err)
	}
	if err := v.VerifySignature(bytes.NewReader(spec.Signature.Content), nil, options.WithDigest(digest)); err != nil {
		return nil, fmt.Errorf("%w: hashedrekord signature does not verify over %s:%s: %w", ErrBadEntry, spec.Data.Hash.Algorithm, spec.Data.Hash.Value, err)
	}
	return canonical, nil
}

// newEntry wraps a spec in the kind/apiVersion header and canonicalises it (RFC 8785), as Rekor does.
func newEntry(kind string, spec any) (Entry, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return Entry{}, fmt.Errorf("encoding %s entry: %w", kind, err)
	}
	body, err := canonicalJSON(entryHeader{APIVersion: APIVersion, Kind: kind, Spec: raw})
	if err != nil {
		return Entry{}, fmt.Errorf("encoding %s entry: %w", kind, err)
	}
	if len(body) > MaxBodySize {
		return Entry{}, fmt.Errorf("%w: %s entry body is %d bytes, more than the log's limit of %d", ErrBadEntry, kind, len(body), MaxBodySize)
	}
	return Entry{kind: kind, body: body}, nil
}

// ParseEntry checks a canonical entry body (as stored in the log or sent by a client that already canonicalised
// it): kind and version supported, every field of the schema present and well formed, nothing else, signatures
// verified where the body allows it (hashedrekord), and the bytes exactly the canonical form.
func ParseEntry(body []byte) (Entry, error) {
	if len(body) > MaxBodySize {
		return Entry{}, fmt.Errorf("%w: entry body is %d bytes, more than the log's limit of %d", ErrBadEntry, len(body), MaxBodySize)
	}
	var hdr entryHeader
	if err := strictUnmarshal(body, &hdr); err != nil {
		return Entry{}, fmt.Errorf("%w: parsing entry body: %w", ErrBadEntry, err)
	}
	if hdr.APIVersion != APIVersion {
		return Entry{}, fmt.Errorf("%w: entry apiVersion %q is not supported (want %q)", ErrBadEntry, hdr.APIVersion, APIVersion)
	}
	var (
		e   Entry
		err error
	)
	switch hdr.Kind {
	case KindDSSE:
		var spec dsseSpec
		if err := strictUnmarshal(hdr.Spec, &spec); err != nil {
			return Entry{}, fmt.Errorf("%w: parsing dsse spec: %w", ErrBadEntry, err)
		}
		if err := checkDSSESpec(&spec); err != nil {
			return Entry{}, err
		}
		e, err = newEntry(KindDSSE, spec)
	case KindHashedRekord:
		var spec hashedRekordSpec
		if err := strictUnmarshal(hdr.Spec, &spec); err != nil {
			return Entry{}, fmt.Errorf("%w: parsing hashedrekord spec: %w", ErrBadEntry, err)
		}
		canonical, err := checkHashedRekord(&spec)
		if err != nil {
			return Entry{}, err
		}
		spec.Signature.PublicKey.Content = canonical
		e, err = newEntry(KindHashedRekord, spec)
		if err != nil {
			return Entry{}, err
		}
	default:
		return Entry{}, fmt.Errorf("%w: entry kind %q is not supported (want %q or %q)", ErrBadEntry, hdr.Kind, KindDSSE, KindHashedRekord)
	}
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(e.body, body) {
		return Entry{}, fmt.Errorf("%w: %s entry body is not in canonical form (RFC 8785 JSON with canonical verifiers)", ErrBadEntry, hdr.Kind)
	}
	return e, nil
}

// checkDSSESpec validates the stored form of a dsse entry; the envelope itself is not in the body, so only the
// shapes can be checked.
func checkDSSESpec(spec *dsseSpec) error {
	for name, h := range map[string]hashValue{"envelopeHash": spec.EnvelopeHash, "payloadHash": spec.PayloadHash} {
		if h.Algorithm != "sha256" {
			return fmt.Errorf("%w: dsse %s algorithm %q is not supported (want sha256)", ErrBadEntry, name, h.Algorithm)
		}
		if _, err := decodeLowerHex(h.Value, sha256.Size); err != nil {
			return fmt.Errorf("%w: dsse %s: %w", ErrBadEntry, name, err)
		}
	}
	if len(spec.Signatures) == 0 {
		return fmt.Errorf("%w: dsse entry has no signatures", ErrBadEntry)
	}
	for i, s := range spec.Signatures {
		if _, err := base64.StdEncoding.DecodeString(s.Signature); err != nil || s.Signature == "" {
			return fmt.Errorf("%w: dsse signature %d is not base64", ErrBadEntry, i)
		}
		_, canonical, err := parseVerifier(s.Verifier)
		if err != nil {
			return fmt.Errorf("%w: dsse verifier %d: %w", ErrBadEntry, i, err)
		}
		spec.Signatures[i].Verifier = canonical
	}
	if !slices.IsSortedFunc(spec.Signatures, func(a, b dsseSignature) int { return strings.Compare(a.Signature, b.Signature) }) {
		return fmt.Errorf("%w: dsse signatures are not sorted", ErrBadEntry)
	}
	return nil
}

// parseVerifier reads one PEM block, a public key or a certificate, and returns its key and canonical PEM (the
// form Rekor stores: "PUBLIC KEY" of the PKIX DER, or "CERTIFICATE" of the raw certificate).
func parseVerifier(p []byte) (crypto.PublicKey, []byte, error) {
	block, rest := pem.Decode(p)
	if block == nil {
		return nil, nil, errors.New("not a PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, errors.New("more than one PEM block (give the signing certificate or key only)")
	}
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing public key: %w", err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding public key: %w", err)
		}
		return pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing certificate: %w", err)
		}
		return cert.PublicKey, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), nil
	default:
		return nil, nil, fmt.Errorf("PEM block type %q is neither PUBLIC KEY nor CERTIFICATE", block.Type)
	}
}

// dssePAE is DSSE's pre-authentication encoding, what the signatures sign.
func dssePAE(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// decodeB64 accepts standard or URL-safe base64, as DSSE allows both.
func decodeB64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

func decodeLowerHex(s string, size int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != size || s != strings.ToLower(s) {
		return nil, fmt.Errorf("%q is not %d lower-case hex digits", s, 2*size)
	}
	return b, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// canonicalJSON encodes v as RFC 8785 JSON.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsoncanonicalizer.Transform(raw)
}
