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
// # What it must never do
//
// It must never accept as a digest anything but sha256 with exactly 64 hex digits, never return a digest that is
// not lower case, and never import more than go-digest: the build sandbox's light packages depend on it.
package content
