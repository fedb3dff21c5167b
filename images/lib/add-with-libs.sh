#!/bin/sh
# Copies files and every shared library they link (as ldd resolves them) into
# a rootfs for a FROM-scratch stage, at the same paths, symlinks resolved to
# files (scratch has none of Debian's merged-/usr links).
#
#   add-with-libs.sh ROOTFS [--libs-only] [--skip DIR] FILE...
#     --libs-only  copy only the libraries of the files that follow
#     --skip DIR   leave out what DIR (a lower layer's rootfs) already holds
set -eu
R=$1; shift
mkdir -p "$R"
libs_only=no skip=
for f in "$@"; do
  case $f in
    --libs-only) libs_only=yes; continue ;;
    --skip) skip=next; continue ;;
  esac
  if [ "$skip" = next ]; then skip=$f; continue; fi
  deps=$(ldd "$f" | awk '/=> \//{print $3} /^\t\//{print $1}')
  [ "$libs_only" = yes ] || deps="$f $deps"
  for d in $deps; do
    [ -n "$skip" ] && [ -e "$skip$d" ] && continue
    cp -L --parents "$d" "$R"
  done
done
