#!/usr/bin/env bash
# Builds l7mp/operator:local (operator/Dockerfile, from the repository, on the
# node:24-trixie-slim base that scripts/make-base-images.sh makes when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bash scripts/build-images.sh operator
