// Package archive turns directory trees into tar streams and back: the layers of builder images, the source a
// task receives, and the files a task is given all pass through it. It depends on the standard library only, so
// the builder store and the source snapshot do not pull in a registry client or sigstore.
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
// itself and refusing any entry whose name, link target or parent path would lead elsewhere, and any sparse file
// (the tar reader would write its holes out as zeros: kilobytes of stream, gigabytes of disk).
//
// # What it must never do
//
// It must never follow a symbolic link, when reading a tree or when writing one: a symlink is an entry whose
// target is data, never a path to open. It must never create, change or read a file outside the destination of
// an extraction, whatever the names, links or order of the entries. It must never leak the host into a tarball:
// no uid, gid, user or group name, mtime, atime, ctime, xattr, setuid or setgid bit.
package archive
