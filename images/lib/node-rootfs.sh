#!/bin/sh
# The base of every runtime rootfs (FROM scratch): this stage's node binary,
# stripped of its debug info (18 MB of the official build), at
# /usr/local/bin/node and /usr/bin/node (STDIO-fork configs and the
# conformance peers name it there), the libraries it links, a world-writable
# /tmp and a minimal /etc (root and nobody, files-then-DNS name lookup).
#
#   node-rootfs.sh ROOTFS
set -eu
R=$1
node=$(command -v node)
mkdir -p "$R/usr/local/bin" "$R/usr/bin" "$R/etc" "$R/tmp"
strip -o "$R/usr/local/bin/node" "$node"
ln -sf /usr/local/bin/node "$R/usr/bin/node"
"$(dirname "$0")/add-with-libs.sh" "$R" --libs-only "$node"
chmod 1777 "$R/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'hosts: files dns\n' >"$R/etc/nsswitch.conf"
