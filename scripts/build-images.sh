#!/usr/bin/env bash
# Builds the project's images from the repository with the Dockerfiles alone
# (no staging: `docker build -f images/X/Dockerfile .` does the same), on the
# base image node:24-trixie-slim, which scripts/make-base-images.sh creates
# locally first when the engine lacks it (no image registry is needed).
#
#   l7mp/gateway          images/gateway/Dockerfile   (default)
#   l7mp/peers            images/peers/Dockerfile     (default)
#   l7mp/gateway-offload  images/offload/Dockerfile   (on the gateway image)
#   l7mp/operator         operator/Dockerfile
#
# Each is tagged :local and :<package version>, and labelled with the version,
# the git revision and the source (org.opencontainers.image.*).
#
# Usage: bash scripts/build-images.sh [all | gateway peers offload operator ...]
#   Without arguments: gateway and peers (what the tests and the conformance
#   suite's container mode use).
# Environment: NODE_IMAGE (the base; default node:24-trixie-slim).
#
# The classic builder (DOCKER_BUILDKIT=0: no buildx plugin needed, Debian's
# docker.io has none) caches every layer: a rebuild with nothing changed takes
# seconds, a source change rebuilds from `tsc` on, a package-lock change from
# `npm ci` on. `--network host`: the engine here runs without a bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOCKER_BUILDKIT=0
NODE_IMAGE=${NODE_IMAGE:-node:24-trixie-slim}
t0=$(date +%s)

log() { echo "build-images: $*"; }
die() { echo "build-images: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'bash scripts/setup-docker.sh'"
# One build at a time on this machine (a test and a conformance run may both ask).
LOCK=${XDG_CACHE_HOME:-$HOME/.cache}/l7mp-build-images.lock
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock -w 1200 9 || die "another build holds $LOCK"

WHAT=("$@")
[ ${#WHAT[@]} -eq 0 ] && WHAT=(gateway peers)
[ "${WHAT[*]}" = all ] && WHAT=(gateway peers offload operator)

L7MP_BASE_IMAGE=$NODE_IMAGE bash scripts/make-base-images.sh

VERSION=$(node -p 'require("./package.json").version')
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[ "$REVISION" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null)" ] && REVISION="$REVISION-dirty"
SOURCE=$(git remote get-url origin 2>/dev/null || echo unknown)

build() {
  local name=$1 dockerfile=$2 t log_file
  t=$(date +%s)
  log_file=$(mktemp)
  if ! docker build --network host -q -f "$dockerfile" \
      -t "l7mp/$name:local" -t "l7mp/$name:$VERSION" \
      --build-arg NODE_IMAGE="$NODE_IMAGE" --build-arg VERSION="$VERSION" \
      --build-arg REVISION="$REVISION" --build-arg SOURCE="$SOURCE" \
      . >/dev/null 2>"$log_file"; then
    cat "$log_file" >&2
    rm -f "$log_file"
    die "docker build -f $dockerfile failed"
  fi
  rm -f "$log_file"
  log "l7mp/$name:local (= :$VERSION) $(docker image inspect -f '{{.Size}}' "l7mp/$name:local" | awk '{printf "%.0f MB", $1/1e6}') ($(( $(date +%s) - t )) s)"
}

has() { local w; for w in "${WHAT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
# The offload image is built on the gateway image.
has offload && ! has gateway && WHAT=(gateway "${WHAT[@]}")
has gateway && build gateway images/gateway/Dockerfile
has peers && build peers images/peers/Dockerfile
has offload && build gateway-offload images/offload/Dockerfile
has operator && build operator operator/Dockerfile

# Rebuilds leave the replaced images dangling: drop ours.
docker image prune -f --filter label=org.l7mp.local=true >/dev/null
log "done in $(( $(date +%s) - t0 )) s"
