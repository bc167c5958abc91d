#!/usr/bin/env bash
# The model strategies practitioners compare, on Fashion-MNIST, each measured
# int8 on the 10,000 test images, over several seeds: the NIID-Bench cnn, that
# cnn with 30% of its channels pruned then fine-tuned, and a small mlp student
# (32, 16) distilled from the cnn against the same mlp trained from scratch.
# Everything trains on 54,000 training images; pruning scores channels on the
# other 6,000 (the validation part, never the test split). Prints a table of
# medians and ranges (`make demo-models`; about 4 minutes a seed).
#   scripts/model_strategies.sh PATH/TO/tinyfed OUT_DIR [SEEDS]
set -euo pipefail
tinyfed=$1
out=$2
seeds=${3:-1 2 3}
mkdir -p "$out"
fm=/usr/share/datasets/fashion-mnist
names="T-shirt,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Boot"
train=(--data "$fm/train-images-idx3-ubyte.gz" --labels "$fm/train-labels-idx1-ubyte.gz" --label-names "$names"
  --holdout 0.1 --split-seed 1)
test=(--data "$fm/t10k-images-idx3-ubyte.gz" --labels "$fm/t10k-labels-idx1-ubyte.gz" --label-names "$names")

for seed in $seeds; do
  d="$out/seed-$seed"
  mkdir -p "$d"
  echo "== seed $seed: cnn, pruned cnn, distilled and scratch mlp"
  "$tinyfed" backbone train --arch cnn --epochs 12 --lr 0.02 --seed "$seed" "${train[@]}" --out "$d/cnn.bundle" |
    tail -n 1
  "$tinyfed" backbone prune --model "$d/cnn.bundle" --channels 30% --epochs 3 --lr 0.005 --seed "$seed" \
    "${train[@]}" --out "$d/cnn-pruned.bundle" | grep -E "^MACs"
  "$tinyfed" backbone distill --teacher "$d/cnn.bundle" --arch mlp --hidden 32,16 --epochs 12 --lr 0.02 \
    --seed "$seed" "${train[@]}" --out "$d/mlp-distilled.bundle" | grep -E "^teacher"
  "$tinyfed" backbone train --arch mlp --hidden 32,16 --epochs 12 --lr 0.02 --seed "$seed" "${train[@]}" \
    --out "$d/mlp-scratch.bundle" | tail -n 1
  for m in cnn cnn-pruned mlp-distilled mlp-scratch; do
    "$tinyfed" model quantize --model "$d/$m.bundle" --out "$d/$m.int8.bundle" "${train[@]}" \
      --calibration-samples 2000 --seed "$seed" >/dev/null
    "$tinyfed" model inspect --model "$d/$m.int8.bundle" --json >"$d/$m.inspect.json"
  done
  "$tinyfed" model eval --json "${test[@]}" --model "$d/cnn.int8.bundle" --model "$d/cnn-pruned.int8.bundle" \
    --model "$d/mlp-distilled.int8.bundle" --model "$d/mlp-scratch.int8.bundle" >"$d/eval.json"
done

python3 - "$out" $seeds <<'PY'
import json, os, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
models = ["cnn", "cnn-pruned", "mlp-distilled", "mlp-scratch"]
runs = []
for s in seeds:
    ev = {os.path.basename(e["model"]).replace(".int8.bundle", ""): e
          for e in json.load(open(os.path.join(out, f"seed-{s}", "eval.json")))}
    ins = {m: json.load(open(os.path.join(out, f"seed-{s}", f"{m}.inspect.json"))) for m in models}
    runs.append((ev, ins))

# Fashion-MNIST's classes are equally common, so the "rarest" is a tie; the
# table follows the hardest of them, the cnn's lowest median sensitivity.
classes = [c["name"] for c in runs[0][0]["cnn"]["classes"]]
def med(xs):
    return statistics.median(xs), min(xs), max(xs)
hardest = min(range(len(classes)), key=lambda c: med([ev["cnn"]["classes"][c]["sensitivity"] for ev, _ in runs])[0])

def figure(f, fmt):
    m, lo, hi = med(f)
    return f"{fmt.format(m)} ({fmt.format(lo)} to {fmt.format(hi)})"

def column(model, key):
    return [key(ev[model], ins[model]) for ev, ins in runs]

print(f"\nFashion-MNIST test set, int8; median (range) over seeds {', '.join(seeds)}; "
      f"hardest class {classes[hardest]} (all classes are equally common)")
print(f"{'model':<14} {'accuracy':>22} {'bytes':>8} {'MACs':>8} {'us/sample':>20} "
      f"{classes[hardest] + ' sens.':>22} {classes[hardest] + ' spec.':>22}")
for m in models:
    acc = column(m, lambda e, i: 100 * e["accuracy"])
    us = column(m, lambda e, i: e["microseconds_per_sample"])
    sens = column(m, lambda e, i: 100 * e["classes"][hardest]["sensitivity"])
    spec = column(m, lambda e, i: 100 * e["classes"][hardest]["specificity"])
    size = column(m, lambda e, i: e["model_bytes"])
    macs = column(m, lambda e, i: i["total_macs"])
    print(f"{m:<14} {figure(acc, '{:.2f}%'):>22} {statistics.median(size):>8.0f} {statistics.median(macs):>8.0f} "
          f"{figure(us, '{:.1f}'):>20} {figure(sens, '{:.1f}%'):>22} {figure(spec, '{:.1f}%'):>22}")

def change(a, b, key):
    return [key(ev[b], ins[b]) - key(ev[a], ins[a]) for ev, ins in runs]
print("\nper technique, paired by seed: median (range)")
for name, a, b in (("pruning 30% of channels", "cnn", "cnn-pruned"), ("distillation vs scratch", "mlp-scratch", "mlp-distilled")):
    acc = change(a, b, lambda e, i: 100 * e["accuracy"])
    size = [1 - ev[b]["model_bytes"] / ev[a]["model_bytes"] for ev, _ in runs]
    macs = [1 - ins[b]["total_macs"] / ins[a]["total_macs"] for _, ins in runs]
    lat = [1 - ev[b]["microseconds_per_sample"] / ev[a]["microseconds_per_sample"] for ev, _ in runs]
    sens = change(a, b, lambda e, i: 100 * e["classes"][hardest]["sensitivity"])
    print(f"{name:<25} accuracy {figure(acc, '{:+.2f}')} points, size {figure([100 * x for x in size], '{:.0f}%')} "
          f"smaller, MACs {figure([100 * x for x in macs], '{:.0f}%')} fewer, time per sample "
          f"{figure([100 * x for x in lat], '{:.0f}%')} less, {classes[hardest]} sensitivity "
          f"{figure(sens, '{:+.1f}')} points")
PY
