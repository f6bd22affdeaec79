#!/usr/bin/env bash
# The images for real: build the cpu image with docker/build.py on podman, then run
# tests/containers (its user, its layers, the whole pipeline in containers) against it.
#
#   bash tests/containers/run.sh           build, then test
#   bash tests/containers/run.sh build     only build (.ci/run builds while the test suite runs)
#   bash tests/containers/run.sh test      only test the last build
#
# Needs root on Debian: podman, runc and debootstrap come from Debian, and no
# container registry is needed (the base image is Debian bookworm + python3 made
# with debootstrap). Run it from the project's venv. Where podman cannot run it
# says why and exits 0, unless PAD_REQUIRE_CONTAINERS=1 (CI): then that fails.
#
# State lives in $PAD_CONTAINERS_HOME (default /var/tmp/pad-containers) and a
# rerun reuses it: podman's storage, in an ext4 image of its own (see below; it
# only grows: delete storage.img to start afresh), the base rootfs tarball, the
# torch wheels, the image record of the last build.
#   PAD_DEBIAN_MIRROR       debootstrap's mirror (default http://deb.debian.org/debian)
#   PAD_BUILD_CA_BUNDLE     CAs pip trusts during the build (default: this machine's bundle)
#   PAD_CONTAINER_TARGETS   images to build (default cpu; the tests run every step in the first)
set -euo pipefail
mode="${1:-all}"
case "$mode" in all | build | test) ;; *) echo "usage: $0 [build|test]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
home="${PAD_CONTAINERS_HOME:-/var/tmp/pad-containers}"
mirror="${PAD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${PAD_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
read -r -a targets <<< "${PAD_CONTAINER_TARGETS:-cpu}"
base=pad.local/debian:bookworm-python3
storage="$home/storage"
socket="$home/podman.sock"
record="$home/pad-images.json"

step() { echo "==> [$(date +%T)] $*"; }
skip() {
  echo "tests/containers SKIPPED: $*" >&2
  if [ "${PAD_REQUIRE_CONTAINERS:-0}" = 1 ]; then echo "PAD_REQUIRE_CONTAINERS=1: that is a failure" >&2; exit 1; fi
  exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (podman runs rootful here)"
missing=()
for tool in podman runc debootstrap openssl; do command -v "$tool" > /dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get > /dev/null || skip "needs ${missing[*]}, and apt-get (Debian) to install them"
  step "installing podman and its helpers from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc containernetworking-plugins debootstrap openssl > /dev/null
fi

# podman's storage goes in an ext4 image of its own: where the root file system is
# mounted with `discard` (our CI machines), deleting a build's intermediate
# containers (a 2 GB venv each) took minutes; in the image it takes seconds.
mkdir -p "$storage"
free_gb="$(df --output=avail -B1G "$home" | tail -1 | tr -d ' ')"
[ "$free_gb" -ge 12 ] || skip "needs 12 GB free under $home for podman's storage, has $free_gb GB"
mounted=0
if ! mountpoint -q "$storage"; then
  if [ ! -f "$home/storage.img" ]; then
    truncate -s 64G "$home/storage.img" && mkfs.ext4 -q -E nodiscard "$home/storage.img"
  fi
  if mount -o loop "$home/storage.img" "$storage"; then mounted=1; else echo "no loop mount: storage on $storage" >&2; fi
fi
work="$(mktemp -d "$storage/run.XXXXXX")"
mkdir -p "$storage/tmp"

# runc with cgroupfs (crun refused our CI machines' hybrid cgroups), and no ulimit above what
# the machine allows, or runc fails to start anything: open files up to the hard limit,
# processes up to the hard limit and kernel.pid_max (above it, setrlimit was refused).
nofile="$(ulimit -Hn)"; [ "$nofile" = unlimited ] && nofile=1048576
nproc="$(ulimit -Hu)"; pid_max="$(cat /proc/sys/kernel/pid_max)"
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; } && nproc="$pid_max"
cat > "$home/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
image_copy_tmp_dir = "$storage/tmp"
EOF
cat > "$home/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$storage/graph"
runroot = "/run/pad-containers"
EOF
export CONTAINERS_CONF="$home/containers.conf" CONTAINERS_STORAGE_CONF="$home/storage.conf"

rm -f "$socket"
TMPDIR="$storage/tmp" podman system service --time=0 "unix://$socket" > "$home/service.log" 2>&1 &
service=$!
finish() {
  kill "$service" 2> /dev/null && wait "$service" 2> /dev/null
  rm -rf "$work"
  if [ "$mounted" = 1 ]; then umount -R "$storage" 2> /dev/null || umount -l "$storage"; fi
}
trap finish EXIT
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.2; done
[ -S "$socket" ] || { cat "$home/service.log" >&2; skip "podman's API service did not start"; }
export DOCKER_HOST="unix://$socket"

if [ "$mode" != test ]; then
  if ! podman image exists "$base"; then
    if [ ! -f "$home/base.tar" ]; then
      step "debootstrap: Debian bookworm + python3 from $mirror"
      rootfs="$work/rootfs"
      debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" \
        > "$home/debootstrap.log" 2>&1 || { tail -20 "$home/debootstrap.log" >&2; exit 1; }
      rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,info,locale}/*
      tar -C "$rootfs" -cf "$home/base.tar" .
    fi
    step "importing the base image $base"
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' "$home/base.tar" "$base" > /dev/null
  fi

  torch="$(sed -n 's/^ARG TORCH=//p' "$root/docker/Dockerfile")"
  step "torch $torch and its dependencies for Python 3.11 into $home/wheels (this machine's pip settings)"
  python -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
    -d "$home/wheels" "torch==$torch"

  # The build's CA bundle carries a throwaway certificate (its key is never kept), which the
  # tests then look for in the image; it is kept for reruns, as a new one would void the build cache.
  [ -f "$home/marker.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null \
    -subj "/CN=pad build-only CA marker" -days 3650 -out "$home/marker.pem" 2> /dev/null
  cat "$ca_bundle" "$home/marker.pem" > "$work/ca-bundle.pem"

  step "docker/build.py --targets ${targets[*]} on podman"
  python "$root/docker/build.py" --registry pad.local --no-push --targets "${targets[@]}" \
    --record "$work/pad-images.json" --build-arg "BASE=$base" --torch-wheels "$home/wheels" \
    --ca-bundle "$work/ca-bundle.pem"
  mv "$work/pad-images.json" "$record"
  podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '/pad-'
fi

if [ "$mode" != build ]; then
  [ -f "$record" ] || { echo "no build to test: run $0 build first" >&2; exit 1; }
  step "tests/containers"
  cd "$root"
  PAD_IMAGES="$record" PAD_TEST_CA_MARKER="$home/marker.pem" \
    python -m pytest tests/containers -q -s -p no:cacheprovider --durations=5
fi
step "done"
