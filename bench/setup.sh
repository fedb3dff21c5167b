#!/bin/sh
# Installs the benchmark's peers and tools from Debian's packages: nginx with
# the stream module (one worker, started by the runner with its own config),
# haproxy, socat, wrk and a C compiler. Idempotent: packages already present
# are left alone and nothing is installed twice.
#
# The runner (npm run bench) starts every peer itself, with config files in a
# temp directory and on loopback ports, and kills it afterwards. The packages'
# system services are not wanted: on machines with an init system this script
# masks them from starting at install time (policy-rc.d), and stops none that
# already ran.
set -eu

need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in nginx-light libnginx-mod-stream haproxy socat wrk gcc libc6-dev; do
  have_pkg "$p" || need="$need $p"
done

if [ -z "$need" ]; then
  echo "bench/setup.sh: all peers installed"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bench/setup.sh: installing$need"
  # Keep package scripts from starting nginx/haproxy as services (exit 101 =
  # "action forbidden"), unless the admin already has a policy in place.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    added_policy=1
  fi
  trap '[ "$added_policy" -eq 1 ] && $SUDO rm -f "$policy"' EXIT
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi

# nginx-light builds the stream module as a dynamic module: check it is there.
if [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  echo "bench/setup.sh: /usr/lib/nginx/modules/ngx_stream_module.so missing (libnginx-mod-stream)" >&2
  exit 1
fi
echo "bench/setup.sh: nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(haproxy -v | head -1 | cut -d' ' -f1-3), socat $(socat -V | sed -n 's/^socat version \([^ ]*\).*/\1/p'), cc $(cc -dumpversion)"
