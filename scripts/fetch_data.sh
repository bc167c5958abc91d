#!/usr/bin/env bash
# Puts the real datasets where the demo and tests expect them, from Debian
# packages only. Fashion-MNIST comes installed (dataset-fashion-mnist); the
# Breast Cancer Wisconsin CSV is extracted from python3-sklearn's .deb
# without installing that package. Idempotent.
#
#   scripts/fetch_data.sh [CACHE_DIR]    (default: .cache/data)
set -euo pipefail

cache=${1:-"$(dirname "$0")/../.cache/data"}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

csv="$cache/breast_cancer.csv"
if [[ ! -s "$csv" ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download python3-sklearn >/dev/null 2>&1) || {
    [[ $(id -u) -eq 0 ]] && apt-get update -qq >/dev/null && (cd "$work" && apt-get download python3-sklearn >/dev/null)
  }
  deb=$(ls "$work"/python3-sklearn_*.deb)
  dpkg-deb -x "$deb" "$work/x"
  src=$(find "$work/x" -path '*sklearn/datasets/data/breast_cancer.csv' | head -n 1)
  [[ -n "$src" ]] || { echo "fetch_data: breast_cancer.csv not found in $deb" >&2; exit 1; }
  cp "$src" "$csv.tmp" && mv "$csv.tmp" "$csv"
fi

fmnist=/usr/share/datasets/fashion-mnist
[[ -s "$fmnist/train-images-idx3-ubyte.gz" ]] || {
  echo "fetch_data: $fmnist is missing; install dataset-fashion-mnist (scripts/install_deps.sh)" >&2
  exit 1
}
echo "$cache"
