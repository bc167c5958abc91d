#!/usr/bin/env python3
"""Whether two report.json files agree on everything but what the machine's
speed decides: wall times and the simulated round times (the cost model
scales measured compute time). The check that a change kept a seeded
simulation's behaviour. Exit 1 and the first differing path when they do
not. Run both on a quiet machine: under load a poll more or less shifts
bytes_down_per_client by a few bytes."""
import json
import sys


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items()
                if "wall" not in k and k not in ("client_rounds_per_second", "simulated_seconds")}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def first_difference(a, b, path="$"):
    if type(a) is not type(b):
        return path
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path} (length)"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else path


a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
d = first_difference(a, b)
if d:
    print(f"differ at {d}")
    sys.exit(1)
print("same (wall and simulated times aside)")
