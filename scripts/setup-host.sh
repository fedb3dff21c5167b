#!/usr/bin/env bash
# Host packages the tests need: real peers (socat, curl), openssl (test
# certificates for the TLS listeners), the BPF toolchain
# for the offload (clang, libbpf, bpftool), build tools for the native addon,
# and Chromium for the dashboard test. Idempotent; needs root (or sudo).
set -euo pipefail
PKGS=(socat curl openssl iproute2 ethtool clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev make g++ python3 chromium libusrsctp-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# bpffs for pinned maps, when the kernel allows it (not fatal: tests say why).
if [ -d /sys/fs/bpf ] && ! mountpoint -q /sys/fs/bpf; then
  $SUDO mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup-host: could not mount bpffs on /sys/fs/bpf"
fi
echo "setup-host: $(socat -V | sed -n 2p); $(clang --version | head -1); chromium $(chromium --version 2>/dev/null | awk '{print $2}')"
