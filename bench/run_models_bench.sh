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
        if b.get("aggregate_name") == "median" and not b.get("error_occurred")}
peer = json.load(open(sys.argv[2]))
def us(name):
    b = ours[name]
    return b["real_time"] * {"us": 1, "ns": 1e-3, "ms": 1e3}[b["time_unit"]]
# /2 AVX-512 VNNI (absent on CPUs without it), /1 AVX2, /0 reference: the
# best set is what Interpreter picks on this CPU.
def best(name):
    return f"{name}/2" if f"{name}/2" in ours else f"{name}/1"
fast_set = ours[best("BM_DsCnn")]["label"]
print(f"\nmedians of {sys.argv[3]} repetitions, batch 1, one thread (PyTorch {peer['torch']}, {peer['engine']}); "
      f"tinyfed's fastest kernels here: {fast_set}")
print(f"{'model':<8} {'tinyfed ' + fast_set:>20} {'tinyfed avx2':>13} {'tinyfed ref':>12} {'pytorch':>9} {'speed-up':>9}")
for key, name in (("cnn", "BM_Cnn"), ("dscnn", "BM_DsCnn")):
    fast, avx2, ref, torch_us = us(best(name)), us(f"{name}/1"), us(f"{name}/0"), peer[f"{key}_us"]
    print(f"{key:<8} {fast:>18.1f}us {avx2:>11.1f}us {ref:>10.1f}us {torch_us:>7.1f}us {torch_us / fast:>8.2f}x")
for arg, kernels in ((1, "avx2"), (0, "reference")):
    pruned, full = us(f"BM_CnnPruned/{arg}"), us(f"BM_Cnn/{arg}")
    print(f"cnn pruned 30% ({kernels}): {pruned:.1f}us, {100 * (1 - pruned / full):.0f}% below the cnn's {full:.1f}us; "
          f"MACs {ours['BM_Cnn/1']['MACs']:.0f} -> {ours['BM_CnnPruned/1']['MACs']:.0f}")
print(f"\nthe ONNX import's reference models, int8 (PyTorch: int8 FX/qnnpack, and float32)")
print(f"{'model':<17} {'tinyfed ' + fast_set:>20} {'tinyfed ref':>12} {'pytorch int8':>13} {'pytorch f32':>12} {'vs int8':>8} {'vs f32':>7}")
for key in ("niid_cnn", "ds_cnn", "mobilenet_v1_025", "resnet8"):
    fast, ref = us(best(f"BM_Onnx/{key}")), us(f"BM_Onnx/{key}/0")
    q, f = peer[f"{key}_int8_us"], peer[f"{key}_float_us"]
    print(f"{key:<17} {fast:>18.1f}us {ref:>10.1f}us {q:>11.1f}us {f:>10.1f}us {q / fast:>7.2f}x {f / fast:>6.2f}x")
print("\nthe dscnn's layers alone (int8 MACs per TSC cycle):")
for layer in ("FirstConv", "Depthwise", "Pointwise"):
    for name in dict.fromkeys((best(f"BM_DsCnn{layer}"), f"BM_DsCnn{layer}/1")):
        b = ours[name]
        print(f"  {layer.lower():<10} {b['label']:<12} {us(name):>7.2f}us {b['MACs/tsc_cycle']:>6.2f}")
whole = ours[best("BM_DsCnn")]
print(f"  {'whole':<10} {whole['label']:<12} {us(best('BM_DsCnn')):>7.2f}us {whole['MACs/tsc_cycle']:>6.2f}")
if sys.argv[5] != "none":
    xnn = {b["run_name"]: b for b in json.load(open(sys.argv[5]))["benchmarks"] if b.get("aggregate_name") == "median"}
    print(f"\nagainst XNNPACK's int8 operators (libxnnpack-dev, no interpreter; same shapes and MACs)")
    print(f"{'model':<8} {'tinyfed ' + fast_set:>20} {'tinyfed avx2':>13} {'xnnpack':>9} {'speed-up':>9} {'avx2':>6}")
    for key, name, peer_name in (("cnn", "BM_Cnn", "BM_XnnpackCnn"), ("dscnn", "BM_DsCnn", "BM_XnnpackDsCnn")):
        b = xnn[peer_name]
        peer_us = b["real_time"] * {"us": 1, "ns": 1e-3, "ms": 1e3}[b["time_unit"]]
        fast, avx2 = us(best(name)), us(f"{name}/1")
        print(f"{key:<8} {fast:>18.1f}us {avx2:>11.1f}us {peer_us:>7.1f}us {peer_us / fast:>8.2f}x {peer_us / avx2:>5.2f}x")
PY
