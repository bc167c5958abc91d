#!/usr/bin/env python3
"""Largest fall of a round's accuracy below the best earlier round, after
round 10, for each report.json given: the "one noisy round wrecks the model"
check of docs/privacy.md. --validation reads the validation split's accuracy
(to choose settings by) instead of the test split's."""
import json
import sys

args = sys.argv[1:]
split = "validation" if args and args[0] == "--validation" else "test"
if split == "validation":
    args = args[1:]
worst = 0.0
for path in args:
    rounds = json.load(open(path))["rounds"]
    best, fall, at = 0.0, 0.0, None
    for r in rounds:
        acc = 100 * (r["validation_accuracy"] if split == "validation" else r["test"]["accuracy"])
        if r["round"] > 10 and best - acc > fall:
            fall, at = best - acc, r["round"]
        best = max(best, acc)
    worst = max(worst, fall)
    print(f"{path}: largest fall of {split} accuracy after round 10: {fall:.2f} points" + (f" (round {at})" if at else ""))
print(f"worst: {worst:.2f} points")
