// Package oci turns directory trees into tar streams and back: the layers of builder images, the source a task
// receives, and the files the factory publishes as OCI artifacts all pass through it.
//
// # Writing
//
// [WriteTree] and [WriteFiles] produce deterministic tarballs: the same tree gives the same bytes on any host, so
// the digest of a layer depends only on names, contents, permission bits and symlink targets. Entries are sorted
// by path in byte order, every mtime is the Unix epoch, owners are 0/0 with no names, and no access or change
// times, extended attributes, device numbers or hard links are recorded.
//
// # Extracting
//
// [Extract] unpacks a tar stream beneath one directory through an [os.Root], creating parent directories
// itself and refusing any entry whose name, link target or parent path would lead elsewhere.
//
// # Images in tarballs
//
// [ReadImageTar] decides whether a build output is an OCI image layout tarball, and if so checks the image
// itself: every blob hashes to its name, and every manifest, index, config and layer the index.json's image
// reaches is in the tarball with its descriptor's digest and size. Publishing streams those blobs from the
// tarball; nothing is unpacked.
//
// # What it must never do
//
// It must never name an image (as a provenance subject, or by pushing it) whose manifests, configs and layers it
// has not itself read from the tarball and hashed; never read a sparse entry, or more bytes than a tarball holds.
//
// It must never follow a symbolic link, when reading a tree or when writing one: a symlink is an entry whose
// target is data, never a path to open. It must never create, change or read a file outside the destination of
// an extraction, whatever the names, links or order of the entries. It must never leak the host into a tarball:
// no uid, gid, user or group name, mtime, atime, ctime, xattr, setuid or setgid bit.
package oci
