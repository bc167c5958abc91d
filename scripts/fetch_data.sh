#!/usr/bin/env bash
# Puts the real datasets where the demo and tests expect them, from Debian
# packages only. Fashion-MNIST comes installed (dataset-fashion-mnist); the
# Breast Cancer Wisconsin and digits CSVs are extracted from python3-sklearn's
# .deb without installing that package. Idempotent.
#
#   scripts/fetch_data.sh [CACHE_DIR]    (default: .cache/data)
set -euo pipefail

cache=${1:-"$(dirname "$0")/../.cache/data"}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# From python3-sklearn: Breast Cancer Wisconsin (tabular) and the 8x8
# handwritten digits (CSV rows that are small images).
wanted=(breast_cancer.csv digits.csv.gz)
missing=()
for f in "${wanted[@]}"; do [[ -s "$cache/$f" ]] || missing+=("$f"); done
if (( ${#missing[@]} > 0 )); then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download python3-sklearn >/dev/null 2>&1) || {
    [[ $(id -u) -eq 0 ]] && apt-get update -qq >/dev/null && (cd "$work" && apt-get download python3-sklearn >/dev/null)
  }
  deb=$(ls "$work"/python3-sklearn_*.deb)
  dpkg-deb -x "$deb" "$work/x"
  for f in "${missing[@]}"; do
    src=$(find "$work/x" -path "*sklearn/datasets/data/$f" | head -n 1)
    [[ -n "$src" ]] || { echo "fetch_data: $f not found in $deb" >&2; exit 1; }
    cp "$src" "$cache/$f.tmp" && mv "$cache/$f.tmp" "$cache/$f"
  done
fi

fmnist=/usr/share/datasets/fashion-mnist
[[ -s "$fmnist/train-images-idx3-ubyte.gz" ]] || {
  echo "fetch_data: $fmnist is missing; install dataset-fashion-mnist (scripts/install_deps.sh)" >&2
  exit 1
}
echo "$cache"
