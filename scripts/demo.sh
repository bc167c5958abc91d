#!/usr/bin/env bash
# The main job: eight clinics learn together on Breast Cancer Wisconsin with
# SecAgg+ and patient-level DP (sim/scenarios/clinics-breast-cancer.toml),
# backbone pretraining on the public split included; prints the summary and
# where the report is.
#   scripts/demo.sh PATH/TO/tinyfed
set -euo pipefail
tinyfed=${1:-build/tools/tinyfed}
root=$(cd "$(dirname "$0")/.." && pwd)
export TINYFED_DATA_DIR
TINYFED_DATA_DIR=$("$root/scripts/fetch_data.sh")
out="$root/.cache/demo/clinics-breast-cancer"
"$tinyfed" sim --scenario "$root/sim/scenarios/clinics-breast-cancer.toml" --out "$out"
