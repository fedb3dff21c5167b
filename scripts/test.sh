#!/usr/bin/env bash
# The README's test command: sets up a fresh machine and runs every test.
#   1. host packages the tests need (socat, curl, Chromium, the BPF and addon
#      toolchains; scripts/setup-host.sh, apt, needs root or sudo)
#   2. a Docker engine for the container tests (scripts/setup-docker.sh)
#   3. the images (scripts/build-images.sh: the Node 24 base node:24-trixie-slim
#      from Debian's and npm's packages on a fresh machine, then the gateway
#      and peer images), before the tests, whose timeouts then cover a cached
#      rebuild only
#   4. npm ci (builds the native addons), then npm test (build + every test,
#      the conformance matrix included)
# Each step is idempotent: on a machine already set up, 1 and 2 take seconds.
# .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
bash scripts/setup-docker.sh
bash scripts/build-images.sh
npm ci
npm test
