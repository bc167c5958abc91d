#!/usr/bin/env python3
"""Largest fall of a round's test accuracy below the best earlier round, after
round 10, for each report.json given: the "one noisy round wrecks the model"
check of docs/privacy.md."""
import json
import sys

worst = 0.0
for path in sys.argv[1:]:
    rounds = json.load(open(path))["rounds"]
    best, fall, at = 0.0, 0.0, None
    for r in rounds:
        acc = 100 * r["test"]["accuracy"]
        if r["round"] > 10 and best - acc > fall:
            fall, at = best - acc, r["round"]
        best = max(best, acc)
    worst = max(worst, fall)
    print(f"{path}: largest fall after round 10: {fall:.2f} points" + (f" (round {at})" if at else ""))
print(f"worst: {worst:.2f} points")
