#!/usr/bin/env bash
# The figures of docs/privacy.md: every shipped scenario over three seeds
# (its own and the next two), then medians and spreads. Usage:
#   scripts/privacy_figures.sh [BUILD_DIR] [OUT_DIR]
# Takes about 15 minutes on two cores.
set -euo pipefail
build=${1:-build}
out=${2:-.cache/privacy-figures}
here=$(cd "$(dirname "$0")/.." && pwd)
export TINYFED_DATA_DIR=${TINYFED_DATA_DIR:-$here/.cache/data}
"$here/scripts/fetch_data.sh" >/dev/null
mkdir -p "$out"
for scenario in clinics-breast-cancer clinics-small clinics-fmnist rural-diurnal dropout-storm; do
  file="$here/sim/scenarios/$scenario.toml"
  first=$(sed -n 's/^seed = \([0-9]*\).*/\1/p' "$file" | head -1)
  for seed in "$first" $((first + 1)) $((first + 2)); do
    echo "== $scenario seed $seed" >&2
    "$build/tools/tinyfed" sim --scenario "$file" --seed "$seed" --out "$out/$scenario-$seed" >/dev/null
  done
done
python3 "$here/scripts/privacy_figures.py" "$out"
