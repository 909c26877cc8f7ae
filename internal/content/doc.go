// Package content names ssf's content: how a blob, file or manifest is identified (its sha256 digest) and what kind
// of content it is (media types and payload types). Every other package uses these, so that a digest has one form
// and a media type one spelling.
//
// A digest is go-digest's [digest.Digest] ("sha256:<64 lower-case hex digits>"), the type image-spec's descriptors
// use, everywhere inside ssf. Other forms are made only at the edges that need them: the bare hex of an in-toto
// digest set ({"sha256": hex}), go-containerregistry's v1.Hash, a blob's file name. The parse functions here are
// the only places that decide whether a string is a digest.
//
// OCI's own media types and annotations come from image-spec's specs-go/v1 constants; this package holds the rest.
//
// # Forms that remain, and why
//
//   - provenance.Digest is the in-toto digest set on the wire; it may hold other algorithms (gitCommit), so it stays
//     a map. provenance.DigestSet makes one from a digest.Digest.
//   - oci.Descriptor is ssf's own descriptor, not image-spec's: its JSON field order differs, and the artifact and
//     referrer manifests must stay byte-identical, since their digests are signed at build time.
//   - oci.Subject is a manifest subject with its size (a referrer's subject descriptor needs one); provenance.Subject
//     has none because an in-toto subject has none. factory.Output is an oci.File and its task.
//   - internal/registry keeps a digest type of its own: it parses client input for the server, sha512 included.
//   - source.Snapshot.SHA256 is still bare hex (the source package was being hardened at the time).
//
// # What it must never do
//
// It must never accept as a digest anything but sha256 with exactly 64 hex digits, never return a digest that is
// not lower case, and never import more than go-digest and the standard library: the light packages (builder,
// pipeline, provenance) depend on it.
package content
