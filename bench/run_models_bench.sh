#!/usr/bin/env bash
# Runs bench/models_bench and its PyTorch qnnpack peer in the same run and
# prints medians and ratios. JSON results land in BUILD_DIR/bench/.
#   bench/run_models_bench.sh BUILD_DIR [REPETITIONS]
set -euo pipefail
build=$1
reps=${2:-10}
out="$build/bench"
"$out/models_bench" --benchmark_repetitions="$reps" --benchmark_min_time=0.2 \
  --benchmark_report_aggregates_only=true --benchmark_format=console \
  --benchmark_out="$out/models_bench.json" --benchmark_out_format=json
/usr/bin/python3 "$(dirname "$0")/torch_peer.py" "$reps" >"$out/torch_peer.json"
/usr/bin/python3 - "$out/models_bench.json" "$out/torch_peer.json" "$reps" <<'PY'
import json, sys
ours = {b["run_name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
peer = json.load(open(sys.argv[2]))
def us(name):
    b = ours[name]
    return b["real_time"] * {"us": 1, "ns": 1e-3, "ms": 1e3}[b["time_unit"]]
print(f"\nmedians of {sys.argv[3]} repetitions, batch 1, one thread (PyTorch {peer['torch']}, {peer['engine']})")
print(f"{'model':<8} {'tinyfed avx2':>13} {'tinyfed ref':>12} {'pytorch':>9} {'speed-up':>9}")
for key, name in (("cnn", "BM_Cnn"), ("dscnn", "BM_DsCnn")):
    fast, ref, torch_us = us(f"{name}/1"), us(f"{name}/0"), peer[f"{key}_us"]
    print(f"{key:<8} {fast:>11.1f}us {ref:>10.1f}us {torch_us:>7.1f}us {torch_us / fast:>8.2f}x")
pw = ours["BM_DsCnnPointwise/1"]
macs_per_cycle = pw["MACs/tsc_cycle"]
print(f"dscnn pointwise conv: {us('BM_DsCnnPointwise/1'):.1f}us, {macs_per_cycle:.2f} int8 MACs per TSC cycle "
      f"= {100 * macs_per_cycle / 30:.0f}% of a 30 MACs/cycle AVX2 peak")
PY
