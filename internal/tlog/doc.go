// Package tlog is ssf's transparency log: an append-only Merkle tree (RFC 6962) of Rekor v1-shaped entries, kept
// on disk by tessera's POSIX storage in the C2SP tlog-tiles layout (`checkpoint`, `tile/<L>/<N>`,
// `tile/entries/<N>`), so that a plain static file server of its directory is a complete read-only mirror.
//
// Every signature the factory makes is appended here before its bundle is written. [Log.Append] answers with what
// a Sigstore bundle's `tlogEntries` needs to verify offline with sigstore-go and stock cosign: the log index, the
// integrated time, the signed entry timestamp (SET), an inclusion proof, and the signed checkpoint the proof is
// against ([LogEntry.Proto]).
//
// # Formats
//
//   - Entries are `dsse` 0.0.1 ([NewDSSEEntry]) and `hashedrekord` 0.0.1 ([NewHashedRekordEntry]) bodies in the
//     canonical (RFC 8785) JSON form Rekor v1 stores; the leaf hash is RFC 6962 HashLeaf(body).
//   - The log ID is sha256 of the log key's DER SubjectPublicKeyInfo; the key is ECDSA P-256.
//   - The checkpoint is a C2SP signed note in the Rekor v1 style: origin `<host> - <treeID>`, signed by the key
//     named `<host>` with key hash = the first 4 bytes of the log ID; the signature is ECDSA (ASN.1) over
//     sha256 of the note text. The tree ID is derived from the log key, so one key names one tree.
//   - The SET is an ECDSA signature over sha256 of the RFC 8785 JSON of
//     {"body","integratedTime","logID","logIndex"}.
//   - The integrated time of each entry is kept beside the tree in `.ssf/integrated-time` (8 bytes per index),
//     because Rekor v1 entries do not commit to it in the leaf: the SET binds it.
//
// # Durability
//
// Concurrent [Log.Append] calls are sequenced in bounded batches; the next batch is whatever arrived while one was
// being written, so a lone append waits for nobody and many appends share each fsync. An entry is acknowledged only
// when its leaf, the tiles that cover it, tessera's tree state and its integrated time are fsynced; its proof is
// against a checkpoint signed then for that durable tree (tessera resumes from it after a crash, so it can never
// be rewritten), and tessera publishes a checkpoint covering it at most 100 ms later. After a crash, [Open]
// returns once the published checkpoint covers the whole durable tree: every acknowledged entry is there with the
// same leaf. Entries written but not acknowledged may or may not be in the log; an integrated one whose time was
// not yet stored gets the time of the recovery (never earlier than its real integration).
//
// # Reading and checking
//
// The read side ([Log.Entry], [Log.InclusionProof], [Log.ConsistencyProof], [Log.Checkpoint]) answers from the
// published checkpoint and the tiles only. [Verifier] checks checkpoints, SETs and proofs with nothing but the log's
// public key and host, and [Verifier.Monitor] audits any copy of the directory (a path or a static HTTP mirror):
// checkpoint signature, every new entry parsed and rehashed, the new tree an extension of the last one verified.
// [Log.TrustedRootEntry] is the log's entry in a Sigstore trusted root.
//
// # Serving
//
// [StaticHandler] serves the published files (`checkpoint`, `tile/...`) exactly as a static file server of the
// directory would, and nothing else. [Server] answers the Rekor v1 REST subset rekor-cli uses (`/api/v1/log`,
// `publicKey`, `proof`, `entries` by index and UUID, verified appends, `retrieve`), with Rekor's shapes and entry
// IDs (16 hex digits of the tree ID, then the leaf hash). [Log.FindLeaf] finds an entry by leaf hash through
// `.ssf/leaf-index`, 8 bytes per entry rebuilt from the tiles where it is missing, each hit confirmed against the
// stored entry. [OpenReadOnly] opens a log another process appends to, for serving beside it: no lock, no
// appender, everything read from the published files.
//
// # What it must never do
//
//   - Never rewrite a published tree: every checkpoint it signs (published, or handed out with an entry) stays
//     consistent with every later one, and [Open] refuses a directory whose tiles do not hash to its published
//     checkpoint or whose checkpoint is not signed by the given key. (Tiles beyond tessera's durable tree state are
//     not yet part of the log and may be redone after a crash; superseded partial tiles are removed once their full
//     tile exists, as C2SP tlog-tiles allows.)
//   - Never acknowledge an entry before it is durable and covered by a checkpoint it signed for the durable tree.
//   - Never accept an entry it cannot parse: bodies are built or re-parsed here, checked against the Rekor schema,
//     their signatures verified, and stored only in canonical form.
//   - Never let two processes append to the same directory (an exclusive lock is held while open).
//   - Never append a proposed entry that does not parse or whose signature does not verify, nor one already in
//     the log (the REST API answers 409 with the existing entry's location).
//   - Never serve over HTTP anything but the published tlog-tiles files: not `.ssf/`, no directory listing, no
//     path through a symbolic link.
package tlog
