#!/usr/bin/env bash
# Host packages the tests use as real peers. Idempotent; needs root (or sudo).
set -euo pipefail
PKGS=(socat curl)
missing=()
for p in "${PKGS[@]}"; do
  command -v "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi
echo "setup-host: $(socat -V | sed -n 2p)"
