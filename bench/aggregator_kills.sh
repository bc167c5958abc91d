#!/usr/bin/env bash
# Random kill -9s of a running aggregator (issue 17's "resume instead of
# abort"): a TLS federation of six gateways on Breast Cancer Wisconsin
# shares, SecAgg+ with distributed DP, whose aggregator is killed KILLS times
# at a random moment (1 to 4 s apart, from SEED) and restarted at once on the
# same port, as a service manager would. bench/aggregator_kills_report.py
# then reads every process's JSON log, the secure sums and the clients'
# encoded updates (tinyfed_testing's --record-dir) and the state, and
# reports: how many rounds a kill interrupted and how many of those completed
# with the exact sum of their survivors; lost models and double charges; the
# time from each restart to the resumed round's next progress. With
# --check it fails unless >= 90% complete exactly, nothing is lost or
# charged twice, and that time is <= 3 s median and <= 10 s at most.
#
#   bench/aggregator_kills.sh BUILD_DIR SOURCE_DIR DATA_DIR KILLS SEED OUT.json [--check]
set -euo pipefail
BUILD=$(realpath "$1") SOURCE=$(realpath "$2") DATA=$(realpath "$3") KILLS=$4 SEED=$5 OUT=$6 CHECK=${7:-}
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
T=$BUILD/tools/tinyfed_testing
OUT=$(realpath -m "$OUT")
WORK=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
source "$SOURCE/tests/lib/tls_federation.sh"
tls_federation_setup "$T" "$CSV" 6
mkdir fed
tls_federation_config 4 30 > fed/agg.toml
start_aggregator() {  # $1: the incarnation
  date +%s%N > fed/started.$1
  (cd fed && exec "$T" aggregator --config agg.toml --log-format json --record-dir "$WORK/sums" \
    > "aggregator.$1.log" 2>&1) &
  agg=$!
}
start_aggregator 0
addr=$(tls_federation_wait_listening fed)
sed -i "s/^listen = .*/listen = \"$addr\"/" fed/agg.toml  # restarts come back on the same port
tls_federation_start_clients "$T" fed "$addr" 6 --record-dir "$WORK/encoded"
for _ in $(seq 300); do grep -q '"round_done"' fed/aggregator.0.log && break; sleep 0.1; done
RANDOM=$SEED
for i in $(seq 1 "$KILLS"); do
  sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
  kill -9 $agg
  wait $agg 2>/dev/null || true
  start_aggregator "$i"
  echo "kill $i of $KILLS"
done
# Time for the last interrupted round to finish, then a clean stop.
for _ in $(seq 300); do
  (($(grep -c '"round_done"' fed/aggregator.$KILLS.log || true) >= 2)) && break
  sleep 0.1
done
kill -TERM $agg
wait $agg 2>/dev/null || true
kill -TERM "${CLIENT_PIDS[@]}" 2>/dev/null || true
python3 "$SOURCE/bench/aggregator_kills_report.py" --dir "$WORK" --kills "$KILLS" --out "$OUT" $CHECK
