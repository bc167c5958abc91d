#!/usr/bin/env bash
# Runs bench/models_bench, onnx_models_bench and their PyTorch peer in the
# same run and prints medians and ratios. JSON results land in BUILD_DIR/bench/.
#   bench/run_models_bench.sh BUILD_DIR [REPETITIONS]
set -euo pipefail
build=$1
reps=${2:-10}
out="$build/bench"
"$out/models_bench" --benchmark_repetitions="$reps" --benchmark_min_time=0.2 --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true --benchmark_format=console \
  --benchmark_out="$out/models_bench.json" --benchmark_out_format=json
"$out/onnx_models_bench" --benchmark_repetitions="$reps" --benchmark_min_time=0.2 --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true --benchmark_format=console \
  --benchmark_out="$out/onnx_models_bench.json" --benchmark_out_format=json
/usr/bin/python3 "$(dirname "$0")/torch_peer.py" "$reps" >"$out/torch_peer.json"
xnnpack_json=none
if [[ -x "$out/xnnpack_peer_bench" ]]; then
  xnnpack_json="$out/xnnpack_peer_bench.json"
  "$out/xnnpack_peer_bench" --benchmark_repetitions="$reps" --benchmark_min_time=0.2 \
    --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true --benchmark_format=console \
    --benchmark_out="$xnnpack_json" --benchmark_out_format=json
fi
/usr/bin/python3 - "$out/models_bench.json" "$out/torch_peer.json" "$reps" "$out/onnx_models_bench.json" "$xnnpack_json" <<'PY'
import json, sys
ours = {b["run_name"]: b for f in (sys.argv[1], sys.argv[4]) for b in json.load(open(f))["benchmarks"]
        if b.get("aggregate_name") == "median"}
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
for arg, kernels in ((1, "avx2"), (0, "reference")):
    pruned, full = us(f"BM_CnnPruned/{arg}"), us(f"BM_Cnn/{arg}")
    print(f"cnn pruned 30% ({kernels}): {pruned:.1f}us, {100 * (1 - pruned / full):.0f}% below the cnn's {full:.1f}us; "
          f"MACs {ours['BM_Cnn/1']['MACs']:.0f} -> {ours['BM_CnnPruned/1']['MACs']:.0f}")
print(f"\nthe ONNX import's reference models, int8 (PyTorch: int8 FX/qnnpack, and float32)")
print(f"{'model':<17} {'tinyfed avx2':>13} {'tinyfed ref':>12} {'pytorch int8':>13} {'pytorch f32':>12} {'vs int8':>8} {'vs f32':>7}")
for key in ("niid_cnn", "ds_cnn", "mobilenet_v1_025", "resnet8"):
    fast, ref = us(f"BM_Onnx/{key}/1"), us(f"BM_Onnx/{key}/0")
    q, f = peer[f"{key}_int8_us"], peer[f"{key}_float_us"]
    print(f"{key:<17} {fast:>11.1f}us {ref:>10.1f}us {q:>11.1f}us {f:>10.1f}us {q / fast:>7.2f}x {f / fast:>6.2f}x")
print(f"dscnn pointwise conv: {us('BM_DsCnnPointwise/1'):.1f}us, {macs_per_cycle:.2f} int8 MACs per TSC cycle "
      f"= {100 * macs_per_cycle / 30:.0f}% of a 30 MACs/cycle AVX2 peak")
if sys.argv[5] != "none":
    xnn = {b["run_name"]: b for b in json.load(open(sys.argv[5]))["benchmarks"] if b.get("aggregate_name") == "median"}
    print(f"\nagainst XNNPACK's int8 operators (libxnnpack-dev, no interpreter; same shapes and MACs)")
    print(f"{'model':<8} {'tinyfed avx2':>13} {'xnnpack':>9} {'speed-up':>9}")
    for key, name, peer_name in (("cnn", "BM_Cnn/1", "BM_XnnpackCnn"), ("dscnn", "BM_DsCnn/1", "BM_XnnpackDsCnn")):
        b = xnn[peer_name]
        peer_us = b["real_time"] * {"us": 1, "ns": 1e-3, "ms": 1e3}[b["time_unit"]]
        print(f"{key:<8} {us(name):>11.1f}us {peer_us:>7.1f}us {peer_us / us(name):>8.2f}x")
PY
