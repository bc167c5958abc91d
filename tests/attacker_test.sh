#!/usr/bin/env bash
# The same seeded federation twice over TLS, `tinyfed aggregator` and five
# `tinyfed client run` on Breast Cancer Wisconsin shares: once in peace, once
# with tests/attacker/attacker.py attacking the aggregator throughout
# (unenrolled calls, a stolen token, forged ids, replays, oversized and
# malformed messages, out-of-phase calls, floods). Every round must publish
# the same model (bundle SHA-256), survivors and epsilon in both, and the
# aggregator's log must not grow with the flood.
#
#   tests/attacker_test.sh BUILD_DIR SOURCE_DIR DATA_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2 DATA=$3
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
T=$BUILD/tools/tinyfed
PY=/usr/bin/python3  # Debian's, with python3-grpcio and python3-nacl
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"

# Python stubs generated from proto/.
mkdir stubs
protoc -I "$SOURCE/proto" --python_out=stubs --grpc_out=stubs \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$SOURCE"/proto/tinyfed/v1/*.proto

source "$SOURCE/tests/lib/tls_federation.sh"
tls_federation_setup "$T" "$CSV" 5

# One federation in directory $1; with $2 = attack, the attacker runs alongside.
federation() {
  local dir=$1 mode=$2
  mkdir "$dir"
  tls_federation_paths > "$dir/agg.toml"
  cat >> "$dir/agg.toml" <<TOML
[rounds]
max_rounds = 3
cohort_size = 5
min_cohort = 5
reset_head = true
poll_interval_ms = 200
[deadlines]
selection = 60
training = 60
share_keys = 30
masked_input = 30
unmasking = 30
[dp]
noise_multiplier = 1.0
epsilon_budget = 1000
[secagg]
max_dropout = 0.0
[security]
tls_certificate = "$WORK/cert.pem"
tls_private_key = "$WORK/key.pem"
requests_per_minute = 1200
[testing]
simulation_seed = 11
TOML
  # The usual descriptor limit: the flood below used to exhaust it.
  (cd "$dir" && ulimit -n 1024 && exec $T aggregator --config agg.toml > aggregator.log 2>&1) &
  local agg=$!
  local addr
  addr=$(tls_federation_wait_listening "$dir")
  local attacker="" flood=""
  if [[ $mode == attack ]]; then
    local stolen
    stolen=$($T enroll --config "$dir/agg.toml" 2>/dev/null)
    $PY "$SOURCE/tests/attacker/attacker.py" --stubs "$WORK/stubs" --address "$addr" --ca cert.pem \
      --token "$stolen" --victim clinic-0 --seconds 8 > "$dir/attacker.log" 2>&1 &
    attacker=$!
    # Connection exhaustion from nobody: more idle TLS, half-open and bare
    # connections than the aggregator has descriptors, for the whole attack.
    $PY "$SOURCE/tests/attacker/flood.py" --port "${addr##*:}" --idle-tls 900 --half-open 150 --streams 16 \
      --bare 300 --seconds 10 > "$dir/flood.json" 2>&1 &
    flood=$!
    sleep 1  # the attack is under way before the first check-in
  fi
  tls_federation_start_clients "$T" "$dir" "$addr" 5 --simulation-seed 11
  for p in "${CLIENT_PIDS[@]}"; do wait "$p" || { cat "$dir"/gw*.log; echo "FAIL: a client failed ($dir)"; exit 1; }; done
  wait $agg || { cat "$dir/aggregator.log"; echo "FAIL: aggregator exit ($dir)"; exit 1; }
  if [[ -n $attacker ]]; then
    wait "$attacker" || { cat "$dir/attacker.log"; echo "FAIL: the attacker got an unexpected answer"; exit 1; }
    wait "$flood" || { cat "$dir/flood.json"; echo "FAIL: the connection flood failed"; exit 1; }
    echo "connection flood: $(cat "$dir/flood.json")"
    cat "$dir/attacker.log"
  fi
  $T aggregator status --config "$dir/agg.toml" --json > "$dir/status.json"
}

federation peace peace
federation attacked attack

# Same rounds, same models.
summary() {
  $PY -c 'import json, sys
s = json.load(open(sys.argv[1]))
for r in s["rounds"]:
    print("round", r["round_id"], r["state"], "survivors", r["survivors"], "epsilon %.6f" % r["epsilon"])
for m in s["models"]:
    print("model v%d" % m["version"], m["bundle_sha256"])' "$1"
}
summary peace/status.json > peace.txt
summary attacked/status.json > attacked.txt
cat attacked.txt
diff peace.txt attacked.txt || { echo "FAIL: the attack changed a round result"; exit 1; }
grep -c "round .* done" peace.txt >/dev/null
[[ $(grep -c "^round .* done" attacked.txt) == 3 ]] || { echo "FAIL: not every round completed"; exit 1; }
for f in peace attacked; do
  $PY -c 'import json, sys
s = json.load(open(sys.argv[1]))
published = sorted(m["round_id"] for m in s["models"] if m["round_id"] > 0)
sys.exit(0 if sorted(s["charged_rounds"]) == published else 1)' "$f/status.json" \
    || { echo "FAIL: $f: ledger charges differ from published models"; exit 1; }
done
echo "ledger charges == published models in both federations"
grep -q "Too many open files" attacked/aggregator.log && { echo "FAIL: the aggregator ran out of descriptors"; exit 1; }
refusals=$(grep -c "refused" attacked/aggregator.log || true)
echo "aggregator log: $(wc -l < attacked/aggregator.log) lines, $refusals about refusals"
[[ $refusals -lt 60 ]] || { echo "FAIL: the flood flooded the log ($refusals refusal lines)"; exit 1; }
echo "PASS: the attacked federation published the same models as the peaceful one"

# An insider among six gateways: it follows the protocol, but its key shares
# open for nobody. Its neighbours used to give up, and every round aborted.
mkdir insider
sed -e 's/^cohort_size = 5/cohort_size = 6/' -e 's/^selection = 60/selection = 4/' \
    -e 's/^max_dropout = 0.0/max_dropout = 0.2/' peace/agg.toml > insider/agg.toml
(cd insider && ulimit -n 1024 && exec $T aggregator --config agg.toml > aggregator.log 2>&1) &
agg=$!
addr=$(tls_federation_wait_listening insider)
token=$($T enroll --config insider/agg.toml --device-id insider 2>/dev/null)
"$BUILD/tests/insider_gateway" insider insider/gw-insider "$addr" roots/1.root cert.pem "$token" clinic0.csv \
  > insider/insider.log 2>&1 &
insider_pid=$!
tls_federation_start_clients "$T" insider "$addr" 5 --simulation-seed 11
for p in "${CLIENT_PIDS[@]}"; do wait "$p" || { cat insider/gw*.log; echo "FAIL: an honest client failed"; exit 1; }; done
wait $agg || { cat insider/aggregator.log; echo "FAIL: aggregator exit (insider)"; exit 1; }
kill $insider_pid 2>/dev/null || true
$T aggregator status --config insider/agg.toml --json > insider/status.json
summary insider/status.json > insider.txt
cat insider.txt
[[ $(grep -c "^round .* done survivors 5" insider.txt) == 3 ]] || { cat insider/aggregator.log; echo "FAIL: with an insider, not every round completed with the 5 honest gateways"; exit 1; }
grep -q "device insider is left out of the sum: its key shares failed authentication" insider/aggregator.log \
  || { cat insider/aggregator.log; echo "FAIL: the insider was not named"; exit 1; }
grep -q "excluded from later cohorts" insider/aggregator.log || { echo "FAIL: the insider was not excluded"; exit 1; }
echo "PASS: an insider costs the rounds only itself, is named and left out of later cohorts"
