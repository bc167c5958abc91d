#!/usr/bin/env bash
# Builds the aggregator and gateway images from Debian's archive alone: a
# Debian 12 base made by mmdebstrap (base images are not pulled), then the
# two stages of deploy/container/Containerfile.
#
#   deploy/container/build_images.sh [TAG] [--binary PATH]
#     TAG      image tag (default 0.1.0): localhost/tinyfed-aggregator:TAG, localhost/tinyfed-gateway:TAG
#     --binary a tinyfed built on Debian 12 (skips the compile stage)
# PODMAN_FLAGS adds global podman flags (tests in a sandbox without cgroup
# v2 use "--runtime runc --cgroup-manager cgroupfs").
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
tag=${1:-0.1.0}
binary=${3:-}
[[ ${2:-} == --binary || -z ${2:-} ]] || { echo "usage: $0 [TAG] [--binary PATH]" >&2; exit 2; }
# shellcheck disable=SC2206
podman=(podman ${PODMAN_FLAGS:-})
if ! "${podman[@]}" image exists localhost/debian:bookworm; then
  echo "build_images: making localhost/debian:bookworm with mmdebstrap"
  mmdebstrap --quiet --variant=minbase bookworm - | "${podman[@]}" import - localhost/debian:bookworm >/dev/null
fi
build=("${podman[@]}" build --quiet --format docker --network host -f "$src/deploy/container/Containerfile")
# Some sandboxes refuse raising limits: keep the container's at the caller's.
build+=(--ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit nproc=4096:4096)
if [[ -n $binary ]]; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  install -s "$binary" "$context/tinyfed"
  build+=(--build-context "tinyfed-binary=$context")
fi
for target in aggregator gateway; do
  "${build[@]}" --target $target -t "localhost/tinyfed-$target:$tag" "$src" >/dev/null
  echo "built localhost/tinyfed-$target:$tag"
done
