#!/bin/sh
# mkrootfs.sh DIR: make a builder root file system in DIR from this machine's busybox-static and Go toolchain.
# ssf builder import DIR --name go-builder then packs it into a builder image. Nothing is downloaded: the build
# must not use the network, so the toolchain comes from the host's Go installation.
set -eu
dir=${1:?usage: mkrootfs.sh DIR}
busybox=$(command -v busybox) || { echo "mkrootfs.sh: busybox not found (apt-get install busybox-static)" >&2; exit 2; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "mkrootfs.sh: $busybox is not statically linked (apt-get install busybox-static)" >&2; exit 2
fi
goroot=$(go env GOROOT) || { echo "mkrootfs.sh: go not found" >&2; exit 2; }
[ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || { echo "mkrootfs.sh: $dir is not empty" >&2; exit 2; }

mkdir -p "$dir/bin" "$dir/etc" "$dir/usr/local"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$dir/etc/passwd"
printf 'root:x:0:\n' > "$dir/etc/group"
# The toolchain without its own test suite and docs, which a build never reads.
mkdir -p "$dir/usr/local/go"
(cd "$goroot" && tar --exclude=./test --exclude=./doc -cf - .) | (cd "$dir/usr/local/go" && tar -xf -)
echo "$dir"
