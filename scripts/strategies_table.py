#!/usr/bin/env python3
"""The table scripts/model_strategies.sh prints, from the files it wrote:
per model, medians and ranges over seeds of int8 test accuracy, bytes, MACs,
time per sample and the hardest class's sensitivity and specificity; per
technique, the same figures paired by seed.

  scripts/strategies_table.py OUT_DIR SEED [SEED ...]
"""
import json, os, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
models = ["cnn", "cnn-pruned", "mlp-distilled", "mlp-scratch", "mlp-distilled-5k", "mlp-scratch-5k"]
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
print(f"{'model':<16} {'accuracy':>26} {'bytes':>7} {'MACs':>7} {'us/sample (eval)':>20} "
      f"{classes[hardest] + ' sensitivity':>26} {classes[hardest] + ' specificity':>26}")
for m in models:
    acc = column(m, lambda e, i: 100 * e["accuracy"])
    us = column(m, lambda e, i: e["microseconds_per_sample"])
    sens = column(m, lambda e, i: 100 * e["classes"][hardest]["sensitivity"])
    spec = column(m, lambda e, i: 100 * e["classes"][hardest]["specificity"])
    size = column(m, lambda e, i: e["model_bytes"])
    macs = column(m, lambda e, i: i["total_macs"])
    print(f"{m:<16} {figure(acc, '{:.2f}%'):>26} {statistics.median(size):>7.0f} {statistics.median(macs):>7.0f} "
          f"{figure(us, '{:.1f}'):>20} {figure(sens, '{:.1f}%'):>26} {figure(spec, '{:.1f}%'):>26}")

def change(a, b, key):
    return [key(ev[b], ins[b]) - key(ev[a], ins[a]) for ev, ins in runs]
print("\nper technique, paired by seed: median (range)")
for name, a, b in (("pruning 30% of channels", "cnn", "cnn-pruned"),
                   ("distillation vs scratch, 54,000 images", "mlp-scratch", "mlp-distilled"),
                   ("distillation vs scratch, 5,000 images", "mlp-scratch-5k", "mlp-distilled-5k")):
    acc = change(a, b, lambda e, i: 100 * e["accuracy"])
    size = [ev[b]["model_bytes"] / ev[a]["model_bytes"] - 1 for ev, _ in runs]
    macs = [ins[b]["total_macs"] / ins[a]["total_macs"] - 1 for _, ins in runs]
    lat = [ev[b]["microseconds_per_sample"] / ev[a]["microseconds_per_sample"] - 1 for ev, _ in runs]
    sens = change(a, b, lambda e, i: 100 * e["classes"][hardest]["sensitivity"])
    print(f"{name}: accuracy {figure(acc, '{:+.2f}')} points, {classes[hardest]} sensitivity "
          f"{figure(sens, '{:+.1f}')} points;\n  size {figure([100 * x for x in size], '{:+.0f}%')}, MACs "
          f"{figure([100 * x for x in macs], '{:+.0f}%')}, time per sample in model eval "
          f"{figure([100 * x for x in lat], '{:+.0f}%')} (bench/ has the careful latency)")
