#!/bin/sh
# mknoderootfs.sh DIR: make a Node.js builder root file system in DIR from this machine's busybox-static, node
# (with the shared libraries it links) and npm. ssf builder import DIR --name node-builder then packs it into a
# builder image. Nothing is downloaded: the toolchain comes from the host's Node.js installation (Debian's nodejs
# and npm packages, or NodeSource's nodejs, which carries npm). Tasks find node and npm with PATH=/usr/bin:/bin.
# Checked with NodeSource's Node 20 and npm 11, and with Debian 12's nodejs 18.20.4 and npm 9.2.0 (whose
# dependencies are some 900 node-* packages in /usr/share/nodejs: a builder of about 240 MB).
set -eu
dir=${1:?usage: mknoderootfs.sh DIR}
busybox=$(command -v busybox) || { echo "mknoderootfs.sh: busybox not found (apt-get install busybox-static)" >&2; exit 2; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "mknoderootfs.sh: $busybox is not statically linked (apt-get install busybox-static)" >&2; exit 2
fi
node=$(command -v node) || { echo "mknoderootfs.sh: node not found (apt-get install nodejs npm)" >&2; exit 2; }
node=$(readlink -f "$node")
npm=$(command -v npm) || { echo "mknoderootfs.sh: npm not found (apt-get install npm)" >&2; exit 2; }
# npm's package directory: bin/npm-cli.js's grandparent (/usr/lib/node_modules/npm, /usr/share/nodejs/npm).
npmdir=$(dirname "$(dirname "$(readlink -f "$npm")")")
[ -f "$npmdir/package.json" ] || { echo "mknoderootfs.sh: cannot find npm's package directory (tried $npmdir)" >&2; exit 2; }
[ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || { echo "mknoderootfs.sh: $dir is not empty" >&2; exit 2; }

mkdir -p "$dir/bin" "$dir/etc" "$dir/usr/bin" "$dir/tmp"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
done
# npm-cli.js starts with #!/usr/bin/env node.
ln -s ../../bin/busybox "$dir/usr/bin/env"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"

# copy PATH: put a host file at the same path in DIR, symlinks resolved.
copy() {
  mkdir -p "$dir$(dirname "$1")"
  cp -L "$1" "$dir$1"
}
copy "$node"
[ "$node" = /usr/bin/node ] || ln -s "$node" "$dir/usr/bin/node"
# The dynamic loader and every shared library node links, at the paths the loader looks for them.
for lib in $(ldd "$node" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  copy "$lib"
done

# npm with the modules it bundles, and node's global module directories when they exist: Debian's npm package
# puts npm's own dependencies there instead of bundling them.
mkdir -p "$dir$npmdir"
cp -a "$npmdir/." "$dir$npmdir/"
for d in /usr/share/nodejs /usr/lib/nodejs /usr/lib/*/nodejs; do
  if [ -d "$d" ]; then
    mkdir -p "$dir$d"
    cp -a "$d/." "$dir$d/"
  fi
done
# npm and npx start node by its full path rather than through npm-cli.js's #!/usr/bin/env node: Debian's node looks
# for its global modules (where its npm's dependencies are) next to its own executable, which it learns from
# /proc/self/exe or, where there is no /proc (a chroot), from how it was called, and "node" from env names no
# directory: npm then fails with "Cannot find module 'semver/functions/satisfies'".
for cmd in npm npx; do
  printf '#!/bin/sh\nexec /usr/bin/node %s "$@"\n' "$npmdir/bin/$cmd-cli.js" > "$dir/usr/bin/$cmd"
  chmod 755 "$dir/usr/bin/$cmd"
done
echo "$dir"
