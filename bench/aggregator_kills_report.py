#!/usr/bin/env python3
"""What bench/aggregator_kills.sh's kills cost: reads the working directory
it leaves (fed/aggregator.N.log, one JSON object per line, for incarnation N;
fed/started.N, when incarnation N was launched, in Unix ns; sums/ and
encoded/ from tinyfed_testing's --record-dir; the state directory) and
writes a JSON report. --check exits 1 unless issue 17's targets hold."""
import argparse
import json
import os
import sqlite3
import statistics
import sys
from datetime import datetime, timezone

PROGRESS = {"round_cohort", "phase_closed", "round_done", "round_aborted", "round_resumed"}


def events(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line that is not the aggregator's (gRPC's own stderr)
            if isinstance(e, dict) and "time" in e:
                t = datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
                e["t"] = t.timestamp()
                out.append(e)
    return out


def running_at_end(log):
    """The round an incarnation had open when it was killed, if any."""
    active = None
    for e in log:
        if e.get("event") in ("round_started", "round_resumed") and "ended:" not in e.get("message", ""):
            active = e.get("round")
        elif e.get("event") in ("round_done", "round_aborted") and e.get("round") == active:
            active = None
    return active


NEXT_PHASE = {"advertise_keys": "share_keys", "share_keys": "masked_input", "masked_input": "unmasking",
              "unmasking": "result"}


def phase_at_kill(logs, kill, round_id):
    """The phase round_id was in when kill `kill` hit it, from the logs before."""
    phase = "selection"
    for log in logs[:kill]:
        for e in log:
            if e.get("round") != round_id:
                continue
            if e.get("event") == "round_cohort":
                phase = "advertise_keys"
            elif e.get("event") == "phase_closed":
                phase = NEXT_PHASE.get(e.get("phase"), phase)
    return phase


def exact_sum(work, round_id, bits):
    """True/False: the recorded secure sum is the sum of its survivors'
    encoded updates mod 2^bits; None when no sum was recorded."""
    base = os.path.join(work, "sums", f"round-{round_id}")
    if not os.path.exists(base + ".sum"):
        return None
    with open(base + ".sum", "rb") as f:
        got = f.read()
    with open(base + ".survivors") as f:
        survivors = [s for s in f.read().split("\n") if s]
    n = len(got) // 4
    want = [0] * n
    for device in survivors:
        with open(os.path.join(work, "encoded", f"round-{round_id}-{device}.encoded"), "rb") as f:
            enc = f.read()
        if len(enc) != len(got):
            return False
        for j in range(n):
            want[j] += int.from_bytes(enc[4 * j:4 * j + 4], "little")
    mask = (1 << bits) - 1
    return all((want[j] & mask) == int.from_bytes(got[4 * j:4 * j + 4], "little") for j in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--kills", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    fed = os.path.join(a.dir, "fed")
    logs = [events(os.path.join(fed, f"aggregator.{i}.log")) for i in range(a.kills + 1)]
    # The sums are mod 2^bits, as the cohort events say. The aggregator picks
    # the bits once at start, so a round whose event a kill -9 cut from the
    # log has the others' bits.
    bits_of = {e["round"]: e["bits"] for log in logs for e in log if e.get("event") == "round_cohort" and "bits" in e}
    widths = set(bits_of.values())
    common_bits = widths.pop() if len(widths) == 1 else None

    state = sqlite3.connect(os.path.join(fed, "state", "aggregator.db"))
    rounds = {r: (s, surv, reason) for r, s, surv, reason in
              state.execute("SELECT round_id, state, survivors, reason FROM rounds")}
    models = state.execute("SELECT version, round_id, file FROM models ORDER BY version").fetchall()
    ledger = sqlite3.connect(os.path.join(fed, "state", "ledger.db"))
    charged = [r for (r,) in ledger.execute("SELECT round FROM charges WHERE round NOT IN (SELECT round FROM voids)")]
    pld_twice = ledger.execute("SELECT COUNT(*) FROM (SELECT round FROM pld_steps GROUP BY round, sampling_rate, "
                               "noise_multiplier, steps HAVING COUNT(*) > 1)").fetchone()[0]

    interrupted, progress, censored, phases = {}, [], [], []
    for i in range(1, a.kills + 1):
        r = running_at_end(logs[i - 1])
        if r is None:
            continue
        interrupted.setdefault(r, []).append(i)
        phases.append(phase_at_kill(logs, i, r))
        with open(os.path.join(fed, f"started.{i}")) as f:
            started = int(f.read()) / 1e9
        after = [e["t"] for e in logs[i] if e.get("round") == r and e.get("event") in PROGRESS
                 and not (e.get("event") == "round_resumed" and "ended:" not in e.get("message", ""))]
        if after:
            progress.append(round(after[0] - started, 3))
        elif i < a.kills:
            # The next kill came first: the time is at least that life.
            with open(os.path.join(fed, f"started.{i + 1}")) as f:
                censored.append(round(int(f.read()) / 1e9 - started, 3))
        else:
            progress.append(None)

    outcomes = {}
    for r in interrupted:
        s, survivors, reason = rounds.get(r, ("missing", 0, ""))
        bits = bits_of.get(r, common_bits)
        outcomes[r] = {"state": s, "survivors": survivors, "reason": reason, "kills": interrupted[r],
                       "exact_sum": exact_sum(a.dir, r, bits) if s == "done" and bits is not None else None}
    exact = sum(1 for o in outcomes.values() if o["state"] == "done" and o["exact_sum"] is True)
    published_rounds = sorted(m[1] for m in models if m[1] > 0)
    done_rounds = sorted(r for r, v in rounds.items() if v[0] == "done")
    lost = [v for v, _, f in models if not os.path.exists(os.path.join(fed, f) if not os.path.isabs(f) else f)]
    lost += [r for r in done_rounds if r not in published_rounds]
    versions_contiguous = [m[0] for m in models] == list(range(1, len(models) + 1))
    times = [p for p in progress if p is not None]
    report = {
        "kills": a.kills,
        "rounds_interrupted": len(interrupted),
        "completed_exact": exact,
        "completed_exact_fraction": exact / len(interrupted) if interrupted else None,
        "outcomes": {str(r): o for r, o in sorted(outcomes.items())},
        "rounds_total": len(rounds),
        "rounds_done": len(done_rounds),
        "rounds_aborted": sum(1 for v in rounds.values() if v[0] == "aborted"),
        "models_published": len(models),
        "lost_models": len(lost) + (0 if versions_contiguous else 1),
        "charges_without_model": sorted(set(charged) - set(published_rounds)),
        "models_without_charge": sorted(set(published_rounds) - set(charged)),
        "double_charges": len(charged) - len(set(charged)) + pld_twice,
        "phase_at_kill": {p: phases.count(p) for p in sorted(set(phases))},
        "restart_to_progress_s": progress,
        "restart_to_progress_censored_s": censored,
        "restart_to_progress_median_s": round(statistics.median(times), 3) if times else None,
        "restart_to_progress_max_s": max(times) if times else None,
    }
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"{a.kills} kills interrupted {len(interrupted)} rounds: {exact} completed with the exact sum of their "
          f"survivors; {report['rounds_done']} of {report['rounds_total']} rounds done in all; "
          f"lost models {report['lost_models']}, double charges {report['double_charges']}, charges without a model "
          f"{len(report['charges_without_model'])}; restart to progress median {report['restart_to_progress_median_s']}"
          f" s, max {report['restart_to_progress_max_s']} s ({len(censored)} killed again before progress, "
          f"after {censored} s); kills by phase {report['phase_at_kill']}")
    for r, o in sorted(outcomes.items()):
        if not (o["state"] == "done" and o["exact_sum"]):
            print(f"  round {r}: {o['state']} ({o['reason'] or 'no sum recorded'})")
    if a.check:
        failures = []
        if interrupted and exact / len(interrupted) < 0.9:
            failures.append("fewer than 90% of interrupted rounds completed with the exact sum")
        if report["lost_models"] or report["double_charges"] or report["charges_without_model"]:
            failures.append("a model lost or a charge wrong")
        if None in progress:
            failures.append("a resumed round never progressed")
        if times and (statistics.median(times) > 3 or max(times + censored) > 10):
            failures.append("restart to progress over 3 s median or 10 s at most")
        for f in failures:
            print("FAIL:", f)
        sys.exit(1 if failures else 0)


main()
