#!/usr/bin/env bash
# Docker engine for the container tests and the conformance suite's container
# mode. Idempotent: installs docker.io from Debian's packages when dockerd is
# missing, starts the engine when `docker info` fails, and waits (bounded)
# until it answers. Needs root (or sudo).
#
# The engine runs without a bridge and without iptables rules
# (`dockerd --bridge=none --iptables=false`): every container of this project
# runs with `--network host` and talks over loopback, and CI machines have no
# container registry to pull from (images are built locally, see
# scripts/build-images.sh).
set -euo pipefail

LOG=/var/log/l7mp-dockerd.log
WAIT_SECONDS=${DOCKER_WAIT_SECONDS:-60}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v dockerd >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
  echo "setup-docker: engine already running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

# Not answering: start it, unless a dockerd of ours is already starting.
if ! pgrep -x dockerd >/dev/null 2>&1; then
  # A stale pid file from an engine that died would stop the new one.
  $SUDO rm -f /var/run/docker.pid
  # setsid + nohup: the engine outlives this script and the shell that ran it.
  # It keeps only stdin/stdout/stderr: any other descriptor it inherited (a
  # caller's lock, a CI runner's pipe) would stay open as long as the engine
  # runs, holding the lock or keeping the runner waiting for EOF.
  (
    for fd in /proc/self/fd/*; do
      n=${fd##*/}
      if [ "$n" -gt 2 ] && [ "$n" -ne 255 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
    done
    exec $SUDO setsid nohup dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null
  ) &
fi

for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
  if docker info >/dev/null 2>&1; then
    echo "setup-docker: engine up ($(docker version --format '{{.Server.Version}}' 2>/dev/null)) after ~$((i / 2)) s; log in $LOG"
    exit 0
  fi
  sleep 0.5
done
echo "setup-docker: the engine did not answer within ${WAIT_SECONDS} s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
