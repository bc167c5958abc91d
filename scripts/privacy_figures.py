#!/usr/bin/env python3
"""Medians and spreads (min-max) over the seeds of each scenario's runs in
DIR (written by scripts/privacy_figures.sh)."""
import glob
import json
import os
import statistics
import sys


def stats(values):
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def largest_fall(rounds):
    best, fall = 0.0, 0.0
    for r in rounds:
        acc = 100 * r["test"]["accuracy"]
        if r["round"] > 10:
            fall = max(fall, best - acc)
        best = max(best, acc)
    return fall


root = sys.argv[1]
runs = {}
for path in sorted(glob.glob(os.path.join(root, "*", "report.json"))):
    name = os.path.basename(os.path.dirname(path)).rsplit("-", 1)[0]
    runs.setdefault(name, []).append(json.load(open(path)))
for name, reports in runs.items():
    b = [r["baselines"] for r in reports]
    cen = [100 * x["centralized"]["accuracy"] for x in b]
    fed = [100 * x["federated"]["accuracy"] for x in b]
    local = [100 * x["local_only_mean_on_test"] for x in b]
    p = reports[0]["privacy"]
    print(f"{name} ({len(reports)} seeds: {', '.join(str(r['scenario']['seed']) for r in reports)}; "
          f"unit {p['unit']}, {p['accountant']} accountant)")
    print(f"  centralized (no DP) {stats(cen)} %, federated {stats(fed)} %, local-only mean {stats(local)} %")
    print(f"  centralized - federated {stats([c - f for c, f in zip(cen, fed)])} points; "
          f"federated - local-only {stats([f - l for f, l in zip(fed, local)])} points")
    print(f"  epsilon {stats([r['privacy']['epsilon'] for r in reports])} at delta {p['delta']}")
    print(f"  balanced accuracy {stats([100 * x['federated']['balanced_accuracy'] for x in b])} %, "
          f"worst class's sensitivity {stats([x['federated']['worst_sensitivity'] for x in b])}")
    if "decision" in reports[0]:
        c = reports[0]["label_names"].index(reports[0]["decision"]["positive_class"])
        print(f"  {reports[0]['decision']['positive_class']} sensitivity: argmax "
              f"{stats([x['federated']['sensitivity'][c] for x in b])}, at the validation-chosen threshold "
              f"{stats([r['decision']['federated_on_test']['sensitivity'][c] for r in reports])} "
              f"(accuracy {stats([100 * r['decision']['federated_on_test']['accuracy'] for r in reports])} %)")
    print(f"  largest fall below the best earlier round after round 10: "
          f"{stats([largest_fall(r['rounds']) for r in reports])} points")
