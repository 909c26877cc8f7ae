// Package oci is ssf's side of OCI registries: the artifact and referrer manifests a build's outputs and
// provenance are published as, the provenance subjects that name them, the check of image layout tarballs a build
// writes, publishing to a registry and fetching the bundles attached to a manifest.
//
// # Images in tarballs
//
// [ReadImageTar] decides whether a build output is an OCI image layout tarball, and if so checks the image
// itself: every blob hashes to its name, and every manifest, index, config and layer the index.json's image
// reaches is in the tarball with its descriptor's digest and size. Publishing streams those blobs from the
// tarball; nothing is unpacked. Memory is bounded whatever the tarball holds: manifests and indexes together
// (16 MiB), blob entries (65536), and no entry name is remembered that is not a well-formed blob name. Manifests,
// indexes and index.json in which one object has two keys equal ignoring case are refused: encoding/json keeps the
// last, other parsers the first or the exact-case one, so such a manifest would name other layers elsewhere. An
// image whose manifest has a subject is refused: published, it would be a referrer of an artifact it is not. So is
// a tarball with an entry that another tool may take for index.json, oci-layout or a blob ("/index.json",
// "././index.json", "x/../blobs/sha256/..."): it could hold a second image that was not checked.
//
// # Registries
//
// Every registry request fails after a time without progress ([WithTimeout], default [DefaultTimeout]); plain
// HTTP goes only to loopback registries, and a registry's redirect never leaves TLS nor leads from a remote
// registry to a loopback, unspecified or link-local address. Only referrers of the bundle artifactType are read, each bounded in size
// and checked against its digest.
//
// # What it must never do
//
// It must never name an image (as a provenance subject, or by pushing it) whose manifests, configs and layers it
// has not itself read from the tarball and hashed; never read a sparse entry, or more bytes than a tarball holds;
// never push anything before the caller's verification of the bundle passed; never follow a symlink to an output;
// never push an SBOM bundle that does not verify for the output it is named after, nor publish a build without an
// SBOM bundle its provenance lists (or with other bytes than listed); never point a tag (see [Tags]) at a
// manifest the provenance does not name, nor before its provenance is attached; never push a manifest before the
// blobs it references, a fallback referrers index before the referrers it lists, nor drop an entry that index
// held when it was read.
package oci
