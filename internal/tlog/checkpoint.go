package tlog

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// ErrBadCheckpoint is wrapped by every error about a checkpoint that does not parse, is not signed by the log's
// key, or names another log.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// Checkpoint is a signed tree head: the tree's size and root hash, as published.
type Checkpoint struct {
	Origin string // "<host> - <treeID>"
	Size   uint64
	Hash   []byte // RFC 6962 root hash
	Raw    []byte // the signed note, byte for byte as published
}

// logKey holds everything derived from the log's public key.
type logKey struct {
	pub     *ecdsa.PublicKey
	der     []byte   // DER SubjectPublicKeyInfo
	logID   [32]byte // sha256(der)
	keyHash uint32   // first 4 bytes of logID, big-endian: the note key hash
	host    string   // the note key name
	origin  string   // "<host> - <treeID>"
}

func newLogKey(pub crypto.PublicKey, host string) (*logKey, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("the log key must be ECDSA P-256 (the key Rekor v1 verifiers expect), not %T", pub)
	}
	if err := checkHost(host); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(ec)
	if err != nil {
		return nil, fmt.Errorf("encoding the log key: %w", err)
	}
	k := &logKey{pub: ec, der: der, logID: sha256.Sum256(der), host: host}
	k.keyHash = binary.BigEndian.Uint32(k.logID[:4])
	k.origin = fmt.Sprintf("%s - %d", host, TreeID(k.logID))
	return k, nil
}

// TreeID is the numeric tree ID of the log whose ID is logID: the first 8 bytes of the log ID as a positive
// int64. Deriving it from the key keeps one key to one tree without any more state to lose.
func TreeID(logID [32]byte) int64 {
	return int64(binary.BigEndian.Uint64(logID[:8]) >> 1)
}

// checkHost accepts a note key name: not empty, no space, no '+' (golang.org/x/mod/sumdb/note and Rekor's
// checkpoint parser both split on spaces).
func checkHost(host string) error {
	if host == "" || strings.ContainsFunc(host, unicode.IsSpace) || strings.Contains(host, "+") {
		return fmt.Errorf("log host name %q must be non-empty, without spaces or '+'", host)
	}
	return nil
}

// noteSigner signs checkpoints for tessera. tessera takes a checkpoint's origin line from the signer's Name() when
// the option is set, and the note's signature line from Name() when it signs; a Rekor v1 checkpoint needs the two
// to differ ("<host> - <treeID>" and "<host>"). So Name() answers the origin until armed, and the key name after;
// Open arms it right after configuring tessera, before anything is signed, and Sign refuses any text whose origin
// is not this log's, so a change in tessera's behaviour fails loudly instead of publishing a wrong checkpoint.
type noteSigner struct {
	key    *logKey
	signer crypto.Signer
	armed  atomic.Bool
}

func (s *noteSigner) Name() string {
	if s.armed.Load() {
		return s.key.host
	}
	return s.key.origin
}

func (s *noteSigner) KeyHash() uint32 { return s.key.keyHash }

func (s *noteSigner) Sign(msg []byte) ([]byte, error) {
	if !bytes.HasPrefix(msg, []byte(s.key.origin+"\n")) {
		return nil, fmt.Errorf("refusing to sign a checkpoint whose origin is not %q", s.key.origin)
	}
	return signSHA256(s.signer, msg)
}

// noteVerifier verifies the log's checkpoint signatures (key name = host).
type noteVerifier struct{ key *logKey }

func (v noteVerifier) Name() string    { return v.key.host }
func (v noteVerifier) KeyHash() uint32 { return v.key.keyHash }
func (v noteVerifier) Verify(msg, sig []byte) bool {
	h := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.key.pub, h[:], sig)
}

var (
	_ note.Signer   = (*noteSigner)(nil)
	_ note.Verifier = noteVerifier{}
)

// parseCheckpoint verifies raw's signature with the log key and parses it; the origin must be the log's.
func (k *logKey) parseCheckpoint(raw []byte) (*Checkpoint, error) {
	cp, _, _, err := log.ParseCheckpoint(raw, k.origin, noteVerifier{k})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	if len(cp.Hash) != sha256.Size {
		return nil, fmt.Errorf("%w: root hash is %d bytes, not %d", ErrBadCheckpoint, len(cp.Hash), sha256.Size)
	}
	return &Checkpoint{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash, Raw: bytes.Clone(raw)}, nil
}

// signSHA256 signs sha256(msg) with an ECDSA signer (ASN.1 signature).
func signSHA256(signer crypto.Signer, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	sig, err := signer.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing with the log key: %w", err)
	}
	return sig, nil
}
