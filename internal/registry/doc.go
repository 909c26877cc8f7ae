// Package registry is ssf's embedded OCI registry: an http.Handler implementing the OCI distribution-spec v1.1
// (pull, push, cross-repository mount, catalog and tag listing, deletion and the referrers API) over a directory of
// content-addressed files, plus a garbage collector for blobs no manifest references.
//
// # Storage
//
// Under the registry's directory:
//
//	blobs/<alg>/<hex>                         blob and manifest bytes, shared by all repositories
//	repos/<name>/_blobs/<alg>/<hex>           a link: the blob belongs to the repository
//	repos/<name>/_manifests/<alg>/<hex>       a link holding the manifest's media type
//	repos/<name>/_tags/<tag>                  the digest the tag points at
//	repos/<name>/_referrers/<alg>/<hex>/<d>   the descriptor of a manifest whose subject is <alg>:<hex>
//	uploads/<id>/                             in-progress uploads (data, running hash state, owner)
//
// Repository path components cannot start with "_" under the spec's grammar, so the link directories never
// collide with a nested repository. Deleting a blob or manifest from one repository removes only that
// repository's link; the bytes stay until [Registry.GC] finds nothing references them.
//
// # What it must never do
//
//   - Store an unverified blob: every blob is hashed while it streams in and linked into blobs/ only when its
//     digest matches the one the client claimed.
//   - Serve a partial write: bytes reach blobs/ by one hard link of a fsynced file (never replacing a stored
//     blob), so a crash leaves either no blob or the whole blob, and readers only ever open blobs/ paths.
//   - Put crash ordering in a handler: what becomes durable, and in which order (data, then its name, then the
//     directory; the blob before a link to it, a manifest before its tags), is the store's methods' job, written
//     with internal/durable; handlers parse, authorise, call the store and return errors.
//   - Acknowledge bytes it could lose: a chunk's data is fsynced before the session state that counts it (and
//     whose running hash covers it) is saved and the chunk answered. A push that finds its blob, link or
//     manifest already named by a concurrent request syncs that name's directory before answering.
//   - Let a concurrent request undo an acknowledged one: a repository's manifest PUTs and DELETEs are
//     serialised, so a DELETE never removes a tag a PUT has just moved, nor a manifest a PUT has just pushed.
//   - Let a name escape its directory: repository names, tags and digests are checked against the spec's
//     grammar before any path is built from them.
//   - Accept an unauthenticated push: a push needs valid credentials unless the operator chose
//     [WithInsecureLocalPushUnsafe], and even then only from a loopback client.
//   - Buffer a whole blob: blobs stream between the network and files; only manifests (at most 4 MiB) are
//     read into memory.
//   - Let one client starve the others: connections are bounded per client address and in total, where a new
//     client takes an idle connection's place ([LimitListener]), headers and idle connections time out
//     ([NewServer]), bodies must keep up a minimum rate (also a body the handler left unread), a stalled upload
//     holds only its own session's lock, and catalog, tag and referrers listings are paged and read their directories
//     in batches, with each referrer's annotations and media types bounded, so no push can make a listing (or
//     its memory) large.
//   - Make passwords cheap to guess or names cheap to probe: an unknown user costs the same bcrypt work as a
//     wrong password, password checks run at most one per CPU, and a client address that keeps failing is
//     told to wait (429) without a check.
package registry
