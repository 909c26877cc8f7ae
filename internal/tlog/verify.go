package tlog

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrBadProof is wrapped by every verification failure of a SET, an inclusion proof or a consistency proof.
var ErrBadProof = errors.New("transparency log proof does not verify")

// Verifier checks what a log hands out, with nothing but the log's public key and host: checkpoints, SETs,
// inclusion and consistency proofs. It is what a relying party or a monitor does, without the log.
type Verifier struct{ key *logKey }

// NewVerifier returns a verifier for the log with public key pub and host (the default host is "ssf.local").
func NewVerifier(pub crypto.PublicKey, host string) (*Verifier, error) {
	if host == "" {
		host = defaultHost
	}
	k, err := newLogKey(pub, host)
	if err != nil {
		return nil, err
	}
	return &Verifier{key: k}, nil
}

// Origin is the checkpoint origin the verifier expects.
func (v *Verifier) Origin() string { return v.key.origin }

// LogID is the log ID the verifier expects.
func (v *Verifier) LogID() [32]byte { return v.key.logID }

// VerifyCheckpoint checks raw's signature and origin and parses it.
func (v *Verifier) VerifyCheckpoint(raw []byte) (*Checkpoint, error) {
	return v.key.parseCheckpoint(raw)
}

// VerifySET checks e's signed entry timestamp over its body, integrated time, log ID and index.
func (v *Verifier) VerifySET(e *LogEntry) error {
	if e.LogID != v.key.logID {
		return fmt.Errorf("%w: entry %d is from log %x, not %x", ErrBadProof, e.LogIndex, e.LogID, v.key.logID)
	}
	p, err := newSETPayload(e.Body, e.IntegratedTime, e.LogID, e.LogIndex)
	if err != nil {
		return err
	}
	h := sha256.Sum256(p)
	if !ecdsa.VerifyASN1(v.key.pub, h[:], e.SET) {
		return fmt.Errorf("%w: the SET of entry %d does not verify with the log key", ErrBadProof, e.LogIndex)
	}
	return nil
}

// VerifyInclusion checks e's checkpoint signature, that the proof's root and size are the checkpoint's, and that
// the proof puts e's body at its index.
func (v *Verifier) VerifyInclusion(e *LogEntry) error {
	cp, err := v.VerifyCheckpoint(e.Proof.Checkpoint.Raw)
	if err != nil {
		return err
	}
	if cp.Size != e.Proof.TreeSize || !bytes.Equal(cp.Hash, e.Proof.RootHash) {
		return fmt.Errorf("%w: entry %d: the proof is for size %d root %x, the checkpoint signs size %d root %x",
			ErrBadProof, e.LogIndex, e.Proof.TreeSize, e.Proof.RootHash, cp.Size, cp.Hash)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(e.Body)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, e.LogIndex, cp.Size, leaf, e.Proof.Hashes, cp.Hash); err != nil {
		return fmt.Errorf("%w: entry %d: %w", ErrBadProof, e.LogIndex, err)
	}
	return nil
}

// VerifyEntry checks the body parses, the SET and the inclusion proof.
func (v *Verifier) VerifyEntry(e *LogEntry) error {
	if _, err := ParseEntry(e.Body); err != nil {
		return err
	}
	if err := v.VerifySET(e); err != nil {
		return err
	}
	return v.VerifyInclusion(e)
}

// VerifyConsistency checks that the tree signed by older is a prefix of the tree signed by newer.
func (v *Verifier) VerifyConsistency(older, newer *Checkpoint, hashes [][]byte) error {
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, hashes, older.Hash, newer.Hash); err != nil {
		return fmt.Errorf("%w: from size %d to %d: %w", ErrBadProof, older.Size, newer.Size, err)
	}
	return nil
}

// Proto is e as a Sigstore bundle's transparency log entry (Rekor v1 shape: kind and version, integrated time,
// inclusion promise, inclusion proof with checkpoint, canonicalized body).
func (e *LogEntry) Proto() *rekorpb.TransparencyLogEntry {
	return &rekorpb.TransparencyLogEntry{
		LogIndex:          int64(e.LogIndex),
		LogId:             &protocommon.LogId{KeyId: bytes.Clone(e.LogID[:])},
		KindVersion:       &rekorpb.KindVersion{Kind: e.Kind, Version: APIVersion},
		IntegratedTime:    e.IntegratedTime,
		InclusionPromise:  &rekorpb.InclusionPromise{SignedEntryTimestamp: bytes.Clone(e.SET)},
		CanonicalizedBody: bytes.Clone(e.Body),
		InclusionProof: &rekorpb.InclusionProof{
			LogIndex:   int64(e.LogIndex),
			RootHash:   bytes.Clone(e.Proof.RootHash),
			TreeSize:   int64(e.Proof.TreeSize),
			Hashes:     e.Proof.Hashes,
			Checkpoint: &rekorpb.Checkpoint{Envelope: string(e.Proof.Checkpoint.Raw)},
		},
	}
}

// TrustedRootEntry is the log as a Sigstore trusted root's `tlogs` entry (what `ssf trust export` writes and cosign
// --trusted-root reads): the DER key, ECDSA P-256 with SHA-256, the log ID, and a validity that must start at or
// before the integrated time of every entry it is to verify.
func (l *Log) TrustedRootEntry(baseURL string, start time.Time) *prototrustroot.TransparencyLogInstance {
	return (&Verifier{key: l.key}).TrustedRootEntry(baseURL, start)
}

// TrustedRootEntry is the log's trusted root entry (see [Log.TrustedRootEntry]) from its public key alone, so that
// `ssf trust export` need not open (and lock) the log.
func (v *Verifier) TrustedRootEntry(baseURL string, start time.Time) *prototrustroot.TransparencyLogInstance {
	l := v
	return &prototrustroot.TransparencyLogInstance{
		BaseUrl:       baseURL,
		HashAlgorithm: protocommon.HashAlgorithm_SHA2_256,
		PublicKey: &protocommon.PublicKey{
			RawBytes:   bytes.Clone(l.key.der),
			KeyDetails: protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256,
			ValidFor:   &protocommon.TimeRange{Start: timestamppb.New(start)},
		},
		LogId: &protocommon.LogId{KeyId: bytes.Clone(l.key.logID[:])},
	}
}
