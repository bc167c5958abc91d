#!/usr/bin/env bash
# The aggregator as an operator runs it, with the tools operators run: a
# TLS federation of six gateways on loopback whose aggregator logs JSON and
# serves its operator port. Debian's real Prometheus scrapes it and the
# round and epsilon series are read back through Prometheus's HTTP API;
# headless Chromium loads the status page (the screenshot is kept in
# ARTIFACT_DIR); the health service answers SERVING; SIGHUP reloads a
# deadline; a backup is taken while rounds run and restored; SIGTERM turns
# health NOT_SERVING for the drain, then the aggregator exits cleanly.
#
#   tests/operations_test.sh BUILD_DIR SOURCE_DIR DATA_DIR ARTIFACT_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2 DATA=$3 ARTIFACTS=$4
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
for tool in prometheus chromium; do
  command -v $tool >/dev/null || { echo "FAIL: $tool is missing (scripts/install_deps.sh installs it)"; exit 1; }
done
T=$BUILD/tools/tinyfed
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir -p "$ARTIFACTS"
fail() { echo "FAIL: $*"; for f in fed/aggregator.log prometheus.log; do [[ -f $f ]] && tail -n 20 "$f"; done; exit 1; }
# Polls COMMAND every 0.2 s for at most SECONDS.
wait_for() {
  local seconds=$1
  shift
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

source "$SOURCE/tests/lib/tls_federation.sh"
tls_federation_setup "$T" "$CSV" 6
openssl rand -hex 32 > operator.token
TOKEN=$(cat operator.token)
mkdir fed
tls_federation_config 5 30 > fed/agg.toml
cat >> fed/agg.toml <<TOML
[operator]
listen = "127.0.0.1:0"
token_file = "$WORK/operator.token"
drain_timeout = 4
TOML
(cd fed && exec $T aggregator --config agg.toml --log-format json > aggregator.log 2>&1) &
agg=$!
addr=$(tls_federation_wait_listening fed)
wait_for 10 test -s fed/state/operator_listening || fail "no operator port"
ops=$(cat fed/state/operator_listening)
$T aggregator health --address "$addr" --ca cert.pem | grep -qx SERVING || fail "health is not SERVING"
echo "health: SERVING at $addr; operator port $ops"

tls_federation_start_clients "$T" fed "$addr" 6
rounds_done() { grep -c '"event":"round_done"' fed/aggregator.log || true; }
at_least_rounds() { (($(rounds_done) >= $1)); }
wait_for 120 at_least_rounds 2 || fail "fewer than 2 rounds in 120 s"

# Every log line is one JSON object with a UTC time, a level, an event and
# the message; round events carry the round id as a number.
python3 - fed/aggregator.log <<'PY' || fail "the JSON log is malformed"
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
events = [json.loads(l) for l in lines]
for e in events:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]), e
    assert e["level"] and e["event"] and "message" in e, e
done = [e for e in events if e["event"] == "round_done"]
assert done and all(isinstance(e["round"], int) and isinstance(e["model_version"], int) for e in done), done
print(f"log: {len(events)} JSON lines, {len(done)} round_done events with their ids")
PY

# Prometheus scrapes the operator port every second over TLS.
prom_port=$(free_port)
cat > prometheus.yml <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tinyfed-aggregator
    scheme: https
    tls_config:
      ca_file: $WORK/cert.pem
    static_configs:
      - targets: ["$ops"]
YAML
prometheus --config.file=prometheus.yml --storage.tsdb.path=prometheus-data \
  --web.listen-address="127.0.0.1:$prom_port" > prometheus.log 2>&1 &
PROM=http://127.0.0.1:$prom_port
wait_for 60 python3 -c "import urllib.request; urllib.request.urlopen('$PROM/-/ready')" || fail "Prometheus not ready"
scraped_up() {
  python3 -c "import json, urllib.request
targets = json.load(urllib.request.urlopen('$PROM/api/v1/targets'))['data']['activeTargets']
assert targets and targets[0]['health'] == 'up', targets"
}
wait_for 60 scraped_up || fail "Prometheus does not scrape the operator port: $(scraped_up 2>&1 | tail -1)"
rounds_now=$(rounds_done)
wait_for 60 at_least_rounds $((rounds_now + 2)) || fail "rounds stopped while Prometheus scraped"
$T aggregator status --config fed/agg.toml --json > status.json
python3 - "$PROM" status.json <<'PY' || fail "Prometheus does not hold the aggregator's series"
import json, sys, time, urllib.parse, urllib.request
prom, status = sys.argv[1], json.load(open(sys.argv[2]))
def query(path, **params):
    url = f"{prom}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    reply = json.load(urllib.request.urlopen(url))
    assert reply["status"] == "success", reply
    return reply["data"]["result"]
end = time.time()
rounds = query("query_range", query='tinyfed_rounds_total{outcome="done"}', start=end - 120, end=end, step="1s")
assert rounds, "no tinyfed_rounds_total series"
values = [float(v) for _, v in rounds[0]["values"]]
assert values == sorted(values) and values[-1] > values[0], f"rounds did not grow while scraped: {values}"
epsilon = query("query_range", query="tinyfed_epsilon_spent", start=end - 120, end=end, step="1s")
assert epsilon, "no tinyfed_epsilon_spent series"
scraped = sorted({round(float(v), 6) for _, v in epsilon[0]["values"]})
ledger = {round(r["epsilon"], 6) for r in status["rounds"] if r["state"] == "done"}
assert scraped[-1] > 0 and set(scraped) - {0.0} <= ledger, f"epsilon scraped {scraped}, the ledger's after each round {sorted(ledger)}"
phases = query("query", query='sum by (phase) (tinyfed_round_phase_seconds_count)')
assert {p["metric"]["phase"] for p in phases} >= {"selection", "advertise_keys", "share_keys", "masked_input", "unmasking"}, phases
calls = query("query", query='tinyfed_calls_total{method="Submit",code="OK"}')
assert calls and float(calls[0]["value"][1]) > 0, calls
up = query("query", query='up{job="tinyfed-aggregator"}')
assert up and up[0]["value"][1] == "1", up
print(f"prometheus: rounds done {values[0]:.0f} -> {values[-1]:.0f} over the scrape, "
      f"epsilon {scraped[-1]:.4f} (the ledger's after a round), {len(phases)} phases timed")
PY

# The status page: refused without the token, shown with it, in Chromium.
code=$(python3 -c "
import ssl, urllib.request, urllib.error
try:
    urllib.request.urlopen('https://$ops/', context=ssl.create_default_context(cafile='cert.pem'))
except urllib.error.HTTPError as e:
    print(e.code)")
[[ $code == 401 ]] || fail "the status page answered $code without the operator's token"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$WORK/chrome" --ignore-certificate-errors
  --window-size=1280,1600)
"${chrome[@]}" --dump-dom "https://operator:$TOKEN@$ops/" > page.html 2> chrome.log || fail "chromium: $(tail -3 chrome.log)"
for want in "tinyfed aggregator" "rounds done" clinic-0 clinic-5 "Published models" "epsilon spent"; do
  grep -q "$want" page.html || fail "the status page in Chromium does not show '$want'"
done
"${chrome[@]}" --screenshot="$ARTIFACTS/status-page.png" "https://operator:$TOKEN@$ops/" 2>> chrome.log ||
  fail "chromium screenshot: $(tail -3 chrome.log)"
[[ $(stat -c %s "$ARTIFACTS/status-page.png") -gt 10000 ]] || fail "the screenshot is empty"
echo "status page: 401 without the token; in Chromium with it (screenshot $ARTIFACTS/status-page.png)"

# SIGHUP: a new training deadline is taken while rounds run.
sed -i 's/^training = 20$/training = 25/' fed/agg.toml
kill -HUP $agg
reloaded() { grep -q '"event":"config_reloaded".*deadlines.training 20s -> 25s' fed/aggregator.log; }
wait_for 10 reloaded || fail "SIGHUP did not reload the training deadline"
echo "SIGHUP: $(grep -o 'config reloaded[^"]*' fed/aggregator.log | tail -1)"

# A backup while rounds run, restored into a new directory.
$T aggregator backup --config fed/agg.toml --out fed.backup || fail "backup"
$T aggregator restore --backup fed.backup --state-dir restored || fail "restore"
sed "s|^state_dir = .*|state_dir = \"$WORK/restored\"|" fed/agg.toml > restored.toml
$T aggregator status --config restored.toml --json > restored.json
python3 - restored.json <<'PY' || fail "the restored state is not whole"
import json, sys
s = json.load(open(sys.argv[1]))
versions = [m["version"] for m in s["models"]]
assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 3, versions
charged = set(s["charged_rounds"])
published = {m["round_id"] for m in s["models"] if m["round_id"] > 0}
assert published <= charged, (published, charged)
print(f"backup: restored models v1..v{versions[-1]}, {len(charged)} charged rounds")
PY

# SIGTERM: NOT_SERVING for the drain, then a clean exit.
kill -TERM $agg
not_serving() {
  local said
  said=$($T aggregator health --address "$addr" --ca cert.pem 2>&1) && return 1
  [[ $said == *NOT_SERVING* ]]
}
wait_for 3 not_serving || fail "health did not turn NOT_SERVING on SIGTERM: $($T aggregator health --address "$addr" --ca cert.pem 2>&1)"
echo "drain: health NOT_SERVING after SIGTERM"
wait $agg || fail "the aggregator exited with $?"
grep -q '"event":"aggregator_stopping"' fed/aggregator.log || fail "no aggregator_stopping event"
echo "PASS"
