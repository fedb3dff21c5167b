#!/usr/bin/env bash
# Builds the project's images locally, from no registry at all:
#
#   l7mp/node-base:local  FROM scratch: this machine's node binary and the
#                         shared libraries it and uWebSockets.js link (ldd)
#   l7mp/gateway:local    the base + dist/gateway/src + production node_modules
#                         + the native sockets addon (when built)
#   l7mp/peers:local      the base + socat, curl, sh, cat (+ their libraries)
#                         + the conformance suite's node peer server
#
# Usage: bash scripts/build-images.sh [--build]
#   --build   compile the TypeScript first (otherwise dist/ must exist: run
#             `npm run build`, or use `npm run images`, which does both)
#
# The build contexts are staged under $L7MP_IMAGE_STAGE (default
# ~/.cache/l7mp-images). Docker's layer cache keys COPY on file contents, so a
# rebuild with nothing changed takes a few seconds; the production
# node_modules are pruned again only when package.json or package-lock.json
# change. Needs a running engine (scripts/setup-docker.sh) and ldd.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAGE=${L7MP_IMAGE_STAGE:-${XDG_CACHE_HOME:-$HOME/.cache}/l7mp-images}
# The legacy builder: it needs no buildx plugin, works with every engine
# version Debian ships, and caches COPY by content.
export DOCKER_BUILDKIT=0
t0=$(date +%s)
mkdir -p "$STAGE"
# One build at a time per stage folder (a test and a conformance run may both ask).
exec 9>"$STAGE/.lock"
flock -w 600 9 || { echo "build-images: another build holds $STAGE/.lock" >&2; exit 1; }

log() { echo "build-images: $*"; }
die() { echo "build-images: $*" >&2; exit 1; }

[ "${1:-}" = "--build" ] && { log "compiling"; npx tsc -p tsconfig.json; }
[ -f dist/gateway/src/main.js ] || die "dist/gateway/src/main.js is missing: run 'npm run build' first (or pass --build)"
[ -d node_modules/ws ] || die "node_modules is missing: run 'npm ci' first"
docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'bash scripts/setup-docker.sh'"
command -v ldd >/dev/null || die "ldd is missing"

NODE_BIN=$(readlink -f "$(command -v node)")
ABI=$("$NODE_BIN" -p 'process.platform + "_" + process.arch + "_" + process.versions.modules')
UWS_BINARY=node_modules/@trufflesuite/uws-js-unofficial/binaries/uws_${ABI}.node
[ -f "$UWS_BINARY" ] || die "$UWS_BINARY is missing (this Node's ABI is $ABI)"

# Copy FILE (unless FILE_TOO=no) and every shared library ldd resolves for it
# into ROOTFS, at the same paths (symlinks resolved to files, since scratch has
# none of Debian's merged-/usr links). Skips what SKIP (a lower layer's
# rootfs) already has.
add_with_libs() {
  local rootfs=$1 file=$2 skip=${3:-} file_too=${4:-yes}
  local deps f
  deps=$(ldd "$file" | awk '/=> \//{print $3} /^\t\//{print $1}')
  [ "$file_too" = yes ] && deps="$file $deps"
  for f in $deps; do
    [ -n "$skip" ] && [ -e "$skip$f" ] && continue
    cp -L --parents "$f" "$rootfs"
  done
}

fresh() { rm -rf "$1"; mkdir -p "$1"; }

# ------------------------------------------------------------------ node-base
BASE_CTX=$STAGE/node-base
fresh "$BASE_CTX/rootfs"
R=$BASE_CTX/rootfs
add_with_libs "$R" "$NODE_BIN"
# The native binary itself comes with the gateway's node_modules; its libraries belong here.
add_with_libs "$R" "$ROOT/$UWS_BINARY" "" no
mkdir -p "$R/etc" "$R/tmp" "$R/usr/local/bin" "$R/root"
chmod 1777 "$R/tmp"
chmod 700 "$R/root"
[ "$NODE_BIN" = /usr/bin/node ] || { mkdir -p "$R/usr/bin"; ln -sf "$NODE_BIN" "$R/usr/bin/node"; }
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'hosts: files dns\n' >"$R/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"

# --------------------------------------------------------------------- peers
PEERS_CTX=$STAGE/peers
fresh "$PEERS_CTX/rootfs"
P=$PEERS_CTX/rootfs
for b in socat curl sh cat; do
  command -v "$b" >/dev/null || die "$b is missing: run 'bash scripts/setup-host.sh'"
  add_with_libs "$P" "$(readlink -f "$(command -v "$b")")" "$R"
done
# The Unix datagram echo peer (conformance/unix_dgram_echo.c): order-keeping,
# unlike socat's UNIX-RECVFROM,fork.
mkdir -p "$P/peers"
cc -O2 -o "$P/peers/unix_dgram_echo" conformance/unix_dgram_echo.c || die "cc failed on conformance/unix_dgram_echo.c"
add_with_libs "$P" "$P/peers/unix_dgram_echo" "$R" no
# The SCTP-over-UDP echo (conformance/sctp_udp_echo.c) on usrsctp, an SCTP
# stack independent of the gateway's; libusrsctp comes along with its libraries.
cc -O2 -o "$P/peers/sctp_udp_echo" conformance/sctp_udp_echo.c $(pkg-config --cflags --libs usrsctp 2>/dev/null || echo -lusrsctp) -lpthread \
  || die "cc failed on conformance/sctp_udp_echo.c (libusrsctp-dev missing? run 'bash scripts/setup-host.sh')"
add_with_libs "$P" "$P/peers/sctp_udp_echo" "$R" no
# The AF_PACKET echo (conformance/packet_peer.c): enters a veth pair's
# namespace itself (setns on /run/netns/NAME, mounted in), so the image needs no `ip`.
cc -O2 -o "$P/peers/packet_peer" conformance/packet_peer.c || die "cc failed on conformance/packet_peer.c"
add_with_libs "$P" "$P/peers/packet_peer" "$R" no
# socat's SYSTEM: runs /bin/sh (dash here); EXEC:cat finds cat on PATH.
mkdir -p "$P/bin"
ln -s "$(readlink -f "$(command -v sh)")" "$P/bin/sh"
# The conformance suite's HTTP/WebSocket echo server. It needs only node's
# builtins and ws, so it is compiled on its own (cached by the source's hash):
# the image does not depend on which parts of the tree tsconfig.json compiles.
mkdir -p "$P/peers/node_modules"
if [ -f conformance/peer-server.ts ]; then
  PS_HASH=$(sha256sum conformance/peer-server.ts | cut -c1-16)
  PS_OUT=$STAGE/peer-server-$PS_HASH
  if [ ! -f "$PS_OUT/peer-server.js" ]; then
    rm -rf "$STAGE"/peer-server-*
    npx tsc --outDir "$PS_OUT" --rootDir conformance --module nodenext --moduleResolution nodenext \
      --target es2022 --strict --esModuleInterop --skipLibCheck --types node conformance/peer-server.ts
  fi
  cp "$PS_OUT/peer-server.js" "$P/peers/peer-server.js"
fi
printf '{"type":"module","private":true}\n' >"$P/peers/package.json"
cp -a node_modules/ws "$P/peers/node_modules/ws"

# ------------------------------------------------------------------- gateway
# Production node_modules, pruned in a copy; redone only when the manifests change.
PROD=$STAGE/prod
STAMP=$( (cat package.json package-lock.json; echo "$ABI") | sha256sum | cut -c1-16)
if [ "$(cat "$PROD/.stamp" 2>/dev/null)" != "$STAMP" ]; then
  log "pruning a copy of node_modules to the production dependencies"
  fresh "$PROD"
  cp package.json package-lock.json "$PROD/"
  cp -a node_modules "$PROD/node_modules"
  (cd "$PROD" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  # uWebSockets.js ships binaries for every platform and Node ABI: keep ours.
  find "$PROD/node_modules/@trufflesuite/uws-js-unofficial/binaries" -name '*.node' ! -name "uws_${ABI}.node" -delete
  for m in @trufflesuite/uws-js-unofficial ws undici pino yaml typebox prom-client; do
    [ -d "$PROD/node_modules/$m" ] || die "the pruned node_modules lack $m"
  done
  echo "$STAMP" >"$PROD/.stamp"
fi
GW_CTX=$STAGE/gateway
fresh "$GW_CTX"
mkdir -p "$GW_CTX/app/dist/gateway"
# Hard links: the context is read, never written.
cp -al "$PROD/node_modules" "$GW_CTX/app/node_modules"
cp package.json "$GW_CTX/app/package.json"
cp -r dist/gateway/src "$GW_CTX/app/dist/gateway/src"
find "$GW_CTX/app/dist" -name '*.map' -delete
# The sockets addon (UNIX/dgram, UNIX/seqpacket, PIPE, STDIO-fork), where the
# loader (gateway/src/native/sockets.ts) looks: native/sockets/build/Release
# under the folder that holds native/sockets/binding.gyp, i.e. /app; plus any
# library it links that the base lacks. Not built: the image goes without it
# (binding.gyp and the BUILD_FAILED marker still go, so that the gateway
# reports those protocols unavailable with the reason).
SOCK_ADDON=native/sockets/build/Release/l7mp_sockets.node
GW_NATIVE=$GW_CTX/native-rootfs
mkdir -p "$GW_NATIVE/app/native/sockets/build"
cp native/sockets/binding.gyp "$GW_NATIVE/app/native/sockets/binding.gyp"
if [ -f "$SOCK_ADDON" ]; then
  mkdir -p "$GW_NATIVE/app/native/sockets/build/Release"
  cp "$SOCK_ADDON" "$GW_NATIVE/app/$SOCK_ADDON"
  add_with_libs "$GW_NATIVE" "$ROOT/$SOCK_ADDON" "$R" no
else
  [ -f native/sockets/build/BUILD_FAILED ] && cp native/sockets/build/BUILD_FAILED "$GW_NATIVE/app/native/sockets/build/BUILD_FAILED"
  log "l7mp/gateway:local without the sockets addon: $SOCK_ADDON is missing (npm run build:native); UNIX/dgram, UNIX/seqpacket, PIPE and STDIO-fork are unavailable in it"
fi

# -------------------------------------------------------------------- build
# The legacy builder's cache key for COPY includes the files' times: staged
# copies are new files each run, so give them all one fixed time.
find "$BASE_CTX" "$PEERS_CTX" "$GW_CTX" -exec touch -h -d @0 {} +

build() {
  local tag=$1 dir=$2 ctx=$3
  local t=$(date +%s)
  docker build --network host -q -t "$tag" -f "images/$dir/Dockerfile" "$ctx" >/dev/null 2>"$STAGE/$dir.build.log" \
    || { cat "$STAGE/$dir.build.log" >&2; die "docker build of $tag failed"; }
  log "$tag $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}') ($(( $(date +%s) - t )) s)"
}
build l7mp/node-base:local node-base "$BASE_CTX"
build l7mp/gateway:local gateway "$GW_CTX"
build l7mp/peers:local peers "$PEERS_CTX"

# ----------------------------------------------------------- gateway-offload
# The gateway + the tc-bpf object and the bpf addon with the libraries it
# links (libbpf, libelf, libz). Skipped, with the reason, when they are not built.
OFF_ADDON=native/bpf/build/Release/l7mp_bpf.node OFF_OBJ=offload/build/udp_offload.bpf.o
if [ -f "$OFF_ADDON" ] && [ -f "$OFF_OBJ" ]; then
  OFF_CTX=$STAGE/offload
  fresh "$OFF_CTX/rootfs"
  mkdir -p "$OFF_CTX/rootfs/app/native/bpf/build/Release" "$OFF_CTX/rootfs/app/offload/build"
  cp "$OFF_ADDON" "$OFF_CTX/rootfs/app/$OFF_ADDON"
  cp "$OFF_OBJ" "$OFF_CTX/rootfs/app/$OFF_OBJ"
  add_with_libs "$OFF_CTX/rootfs" "$ROOT/$OFF_ADDON" "$R" no
  find "$OFF_CTX" -exec touch -h -d @0 {} +
  build l7mp/gateway-offload:local offload "$OFF_CTX"
  docker run --rm --network host --entrypoint /usr/bin/node l7mp/gateway-offload:local \
    -e "require(process.env.L7MP_BPF_ADDON)" || die "the bpf addon does not load in l7mp/gateway-offload:local"
else
  log "l7mp/gateway-offload:local skipped: $OFF_ADDON or $OFF_OBJ is missing (npm run build:native)"
fi

# Rebuilds leave the replaced images dangling: drop ours.
docker image prune -f --filter label=org.l7mp.local=true >/dev/null

# Smoke check: the native binary loads inside the image.
docker run --rm --network host --entrypoint /usr/bin/node l7mp/gateway:local \
  -e "require('/app/node_modules/@trufflesuite/uws-js-unofficial/binaries/uws_${ABI}.node')" \
  || die "uWebSockets.js does not load in l7mp/gateway:local"
if [ -f "$SOCK_ADDON" ]; then
  # Through the gateway's own loader, as the gateway finds it.
  docker run --rm --network host --entrypoint /usr/bin/node l7mp/gateway:local -e "
    import('/app/dist/gateway/src/native/sockets.js').then((m) => {
      if (m.socketsAddon() === undefined) { console.error(m.socketsUnavailable()); process.exit(1); }
    }, (e) => { console.error(e.message); process.exit(1); })" \
    || die "the sockets addon does not load in l7mp/gateway:local"
fi
log "done in $(( $(date +%s) - t0 )) s"
