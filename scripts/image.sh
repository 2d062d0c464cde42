#!/usr/bin/env bash
# Build the pymultus image from the repository's Dockerfile, here, with no registry: Debian's
# docker.io engine (a private dockerd started and stopped by this script) and a Debian 12 base
# made locally with mmdebstrap from the machine's own apt sources. Writes the image as a
# `docker save` archive that containerd imports (`ctr -n k8s.io images import`); prints the
# build time, size and layers. As root, on Debian 12. Users build with one `docker build`
# (see docs/deployment.md, "The image"); this script only stands in for a registry.
#
#   bash scripts/image.sh            build (or reuse) the archive; its path is the last line
#
# Cached in $PYMULTUS_IMAGE_CACHE (default /var/cache/pymultus-image), keyed by content:
#   base-<key>.tar      the mmdebstrap base: key = its package list
#   pymultus-<key>.tar  the image: key = base key + Dockerfile + build context + extra CA certs
# so a second run with nothing changed takes a second, and a source change rebuilds from the
# cached base (~20 s). Old archives are removed. Nothing else is left behind: dockerd, its data
# root, exec root, socket and containers are removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${PYMULTUS_IMAGE_CACHE:-/var/cache/pymultus-image}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)
tag="pymultus:${version}"
docker_bin=/usr/bin/docker # Debian's client; a newer one earlier in PATH would default to BuildKit

need_apt=()
[ -x /usr/sbin/dockerd ] || need_apt+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "image: installing Debian packages: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the package from starting a system-wide dockerd (with its iptables set-up).
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
mkdir -p "$cache"
# One build at a time (the suite and scripts/test.sh may both ask): the next one waits, then
# finds the archive cached.
exec 9>"$cache/.lock"
flock 9
seconds_since() { # $1: a start time from date +%s%N; prints seconds with one decimal
  local ds=$((($(date +%s%N) - $1) / 100000000))
  echo "$((ds / 10)).$((ds % 10))"
}

# ---- the base: Debian 12 with Debian's python3, venv and pip -----------------------------------
base_packages=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
base_key=$(echo "mmdebstrap apt bookworm $base_packages merged-usr nodocs v2" | sha256sum | cut -c1-16)
# The host's extra CA certificates (Debian's local CA dir): TLS to the package registries may be
# re-signed by a CA only the host trusts, so pip inside the build must trust them too. They go
# in as the Dockerfile's EXTRA_CA_CERTS build argument, the way a user behind such a proxy builds.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()
extra_ca_pem=$([ ${#extra_cas[@]} -eq 0 ] || cat "${extra_cas[@]}")
base_tar="$cache/base-$base_key.tar"

# ---- the image key: base + Dockerfile + the build context (what .dockerignore lets in) ----------
image_key=$( {
  echo "$base_key"
  echo "$extra_ca_pem"
  cat Dockerfile .dockerignore
  find pyproject.toml README.md src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
image_tar="$cache/pymultus-$image_key.tar"

if [ -f "$image_tar" ]; then
  echo "image: $tag unchanged, cached in $image_tar ($(($(stat -c %s "$image_tar") >> 20)) MiB)" >&2
  echo "$image_tar"
  exit 0
fi

tmp=$(mktemp -d /var/tmp/pymultus-image.XXXXXX)
exec_root=$(mktemp -d /run/pymultus-docker.XXXXXX) # short: dockerd's unix sockets live here
dockerd_pid=
# dockerd makes /run/docker/plugins whatever its exec root: remove it unless it was there before.
[ -e /run/docker ] && run_docker_existed=1 || run_docker_existed=
cleanup() {
  local rc=$?
  set +e # every step runs, whatever failed before
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    "$docker_bin" rm -f $("$docker_bin" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  # dockerd unmounts its overlays on a clean exit; a killed one may leave some behind.
  grep -o " $tmp/[^ ]*\| $exec_root/[^ ]*" /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m"; done
  rm -rf "$tmp" "$exec_root"
  [ -n "$run_docker_existed" ] || rm -rf /run/docker
  rm -f "$cache"/.*.partial
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -f "$base_tar" ]; then
  echo "image: making the base $base_tar with mmdebstrap" >&2
  start=$(date +%s%N)
  # The machine's own apt sources; Check-Valid-Until off for snapshot mirrors (the option stays
  # in the base, so the Dockerfile's apt-get update works against the same mirror).
  sources=/etc/apt/sources.list.d/debian.sources
  [ -f "$sources" ] || sources=/etc/apt/sources.list
  mmdebstrap --variant=apt --mode=root --format=tar --quiet \
    --include="$base_packages" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$cache/.base.partial" - <"$sources" >&2
  mv "$cache/.base.partial" "$base_tar"
  echo "image: base made in $(seconds_since "$start") s ($(($(stat -c %s "$base_tar") >> 20)) MiB)" >&2
fi

# ---- a private dockerd: own data root, exec root, pidfile and socket; no iptables, no bridge ----
sock="$exec_root/docker.sock"
# Its own config file too; the key path keeps 20.10's libtrust key out of /etc/docker.
printf '{"deprecated-key-path": "%s"}\n' "$tmp/key.json" >"$tmp/daemon.json"
mkdir -p "$tmp/client"
export DOCKER_HOST="unix://$sock" DOCKER_CONFIG="$tmp/client" DOCKER_BUILDKIT=0
# --iptables=false: Docker's iptables set-up turns the FORWARD policy to DROP, which breaks the
# pod bridges on this host; --bridge=none: no docker0; --ip-forward=false: leave the sysctl alone.
/usr/sbin/dockerd --data-root "$tmp/data" --exec-root "$exec_root" --pidfile "$exec_root/dockerd.pid" \
  --host "unix://$sock" --config-file "$tmp/daemon.json" --iptables=false --ip6tables=false \
  --bridge=none --ip-forward=false --ip-masq=false \
  >"$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 300); do
  "$docker_bin" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { cat "$tmp/dockerd.log" >&2; exit 1; }
  sleep 0.1
done
"$docker_bin" version >/dev/null || { cat "$tmp/dockerd.log" >&2; exit 1; }

"$docker_bin" import "$base_tar" pymultus-base:local >/dev/null
echo "image: building $tag (classic builder, --network host)" >&2
start=$(date +%s%N)
"$docker_bin" build --network host --build-arg BASE_IMAGE=pymultus-base:local \
  --build-arg EXTRA_CA_CERTS="$extra_ca_pem" -t "$tag" . >&2
build_s=$(seconds_since "$start")
"$docker_bin" save -o "$cache/.image.partial" "$tag"
size=$("$docker_bin" image inspect -f '{{.Size}}' "$tag")
base_size=$("$docker_bin" image inspect -f '{{.Size}}' pymultus-base:local)
printf 'image: %s built in %s s: %d MB (base %d MB), %d layers\n' "$tag" "$build_s" \
  $((size / 1000000)) $((base_size / 1000000)) \
  "$("$docker_bin" image inspect -f '{{len .RootFS.Layers}}' "$tag")" >&2
"$docker_bin" history --format '  {{.Size}}\t{{.CreatedBy}}' "$tag" | cut -c1-110 >&2
for old in "$cache"/pymultus-*.tar "$cache"/base-*.tar; do
  [ "$old" = "$base_tar" ] || rm -f "$old"
done
mv "$cache/.image.partial" "$image_tar"
echo "$image_tar"
