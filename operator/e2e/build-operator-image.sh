#!/usr/bin/env bash
# Builds l7mp/operator:local after scripts/build-images.sh has built
# l7mp/node-base:local and staged the production node_modules.
# Run from the repository root after `npm run build` (or npx tsc -p tsconfig.json).
set -euo pipefail
STAGE=${L7MP_IMAGE_STAGE:-$HOME/.cache/l7mp-images}
[ -d "$STAGE/prod/node_modules" ] || { echo "no staged production node_modules in $STAGE/prod: run scripts/build-images.sh first" >&2; exit 1; }
[ -f dist/operator/src/main.js ] || { echo "dist/operator/src/main.js missing: build first" >&2; exit 1; }
CTX=$STAGE/operator
rm -rf "$CTX"
mkdir -p "$CTX/app/dist/operator" "$CTX/app/dist/gateway"
cp -al "$STAGE/prod/node_modules" "$CTX/app/node_modules"
cp package.json "$CTX/app/package.json"
cp -r dist/operator/src "$CTX/app/dist/operator/src"
cp -r dist/gateway/src "$CTX/app/dist/gateway/src"
find "$CTX/app/dist" -name '*.map' -delete
find "$CTX" -exec touch -h -d '2000-01-01 00:00:00' {} +
docker build --network host -t l7mp/operator:local -f operator/Dockerfile "$CTX"
