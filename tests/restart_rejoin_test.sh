#!/usr/bin/env bash
# An aggregator killed (kill -9) mid-round and restarted 20 s later: the
# round it was running resumes from its journal, its six gateways (which kept
# their round's state, polling every second or so) carry it on within 5 s of
# the restart, and it publishes. (Before the journal every such round was
# aborted, and gateways took a median 14.9 s and up to 60 s to be back in a
# cohort when their backoffs grew unbounded.) Prints the time it took.
#
#   tests/restart_rejoin_test.sh BUILD_DIR SOURCE_DIR DATA_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2 DATA=$3
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
T=$BUILD/tools/tinyfed
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
source "$SOURCE/tests/lib/tls_federation.sh"
tls_federation_setup "$T" "$CSV" 6
mkdir fed
tls_federation_config 6 60 > fed/agg.toml
(cd fed && exec $T aggregator --config agg.toml > aggregator.log 2>&1) &
agg=$!
addr=$(tls_federation_wait_listening fed)
tls_federation_start_clients "$T" fed "$addr" 6
cohorts() { grep -c "cohort: 6 devices" "$1" || true; }
for _ in $(seq 300); do (($(cohorts fed/aggregator.log) >= 2)) && break; sleep 0.2; done
(($(cohorts fed/aggregator.log) >= 2)) || { cat fed/aggregator.log; echo "FAIL: no rounds before the kill"; exit 1; }
kill -9 $agg
wait $agg 2>/dev/null || true
sleep 20  # the outage: gateways fail and back off meanwhile
# Back on the same port, as a restarted service would be.
sed -i "s/^listen = .*/listen = \"$addr\"/" fed/agg.toml
(cd fed && exec $T aggregator --config agg.toml > aggregator2.log 2>&1) &
agg=$!
start=$(date +%s%N)
# Progress: a phase of the resumed round closes (every member answered), or
# it ends; a kill between rounds resumes nothing, and the next cohort counts.
progress() { grep -cE "round [0-9]+ (phase|done)|cohort: 6 devices" "$1" || true; }
for _ in $(seq 300); do (($(progress fed/aggregator2.log) >= 1)) && break; sleep 0.1; done
back_ms=$((($(date +%s%N) - start) / 1000000))
(($(progress fed/aggregator2.log) >= 1)) || { cat fed/aggregator2.log; echo "FAIL: no progress in 30 s"; exit 1; }
grep -E "resumed|round [0-9]+ (phase|done|aborted)|cohort" fed/aggregator2.log | head -5
if grep -q "resumed" fed/aggregator2.log; then
  for _ in $(seq 300); do grep -q "round [0-9]* done" fed/aggregator2.log && break; sleep 0.1; done
  grep -q "round [0-9]* done" fed/aggregator2.log || { cat fed/aggregator2.log; echo "FAIL: the resumed round did not finish"; exit 1; }
  ! grep -q "aborted" fed/aggregator2.log || { cat fed/aggregator2.log; echo "FAIL: a round aborted"; exit 1; }
fi
echo "the gateways carried on $back_ms ms after the restart"
((back_ms < 5000)) || { echo "FAIL: took longer than 5 s"; exit 1; }
echo "PASS"
