#!/usr/bin/env bash
# Installs tinyfed into a temporary prefix, builds examples/gateway against
# it, and runs a one-round federation: `tinyfed aggregator` and three gateway
# processes on Breast Cancer Wisconsin shares.
set -euo pipefail
BUILD=$1 SOURCE=$2 DATA=$3
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
cmake -S "$SOURCE/examples/gateway" -B "$WORK/example" -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/example" -j 2 >/dev/null
T=$WORK/prefix/bin/tinyfed
# Reads all of its input first: `cmd | grep -q` under pipefail fails when cmd gets SIGPIPE.
prints() { local all; all=$(cat); grep -q -- "$1" <<<"$all"; }
GW=$WORK/example/gateway

cd "$WORK"
$T backbone train --data "$CSV" --holdout 0.5 --part train --arch mlp --epochs 20 --out float.bundle >/dev/null
$T model quantize --data "$CSV" --holdout 0.5 --part train --model float.bundle --out int8.bundle >/dev/null
$T keys generate --secret root.key --public root.pub >/dev/null
$T keys generate --secret publishing.key --public publishing.pub >/dev/null
$T root new --roots roots --federation example/breast-cancer --root-key root.key --publishing-key publishing.pub >/dev/null
cat > agg.toml <<'TOML'
listen = "127.0.0.1:0"
state_dir = "state"
initial_model = "int8.bundle"
publishing_key = "publishing.key"
roots_dir = "roots"
[rounds]
max_rounds = 1
cohort_size = 3
min_cohort = 3
poll_interval_ms = 50
[deadlines]
training = 20
[dp]
noise_multiplier = 1.0
epsilon_budget = 100
[secagg]
max_dropout = 0.0
[security]
tls_certificate = "cert.pem"
tls_private_key = "key.pem"
requests_per_minute = 6000
TOML
# The aggregator's TLS certificate (an operator would use the region's CA).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=tinyfed-example \
  -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem 2>/dev/null
# Three clinics' confirmed cases: every third row of the data.
for c in 0 1 2; do
  awk -v c=$c 'NR == 1 { next } (NR - 2) % 3 == c' "$CSV" > clinic$c.csv
done
$T aggregator --config agg.toml > aggregator.log 2>&1 &
AGG=$!
for _ in $(seq 100); do [[ -s state/listening ]] && break; sleep 0.1; done
ADDR=$(cat state/listening)
pids=()
for c in 0 1 2; do
  token=$($T enroll --config agg.toml --device-id clinic-$c 2>/dev/null)
  "$GW" --aggregator "$ADDR" --root roots/1.root --ca cert.pem --enroll-token "$token" --data-dir gw$c \
    --device-id clinic-$c --samples clinic$c.csv > gw$c.log 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { cat gw*.log aggregator.log; echo "FAIL: a gateway failed"; exit 1; }; done
wait $AGG || { cat aggregator.log; echo "FAIL: aggregator exit"; exit 1; }
for c in 0 1 2; do
  grep -q "model v2 installed" gw$c.log || { cat gw$c.log; echo "FAIL: gateway $c did not install v2"; exit 1; }
  grep -q "first sample: class" gw$c.log || { cat gw$c.log; echo "FAIL: gateway $c did not predict"; exit 1; }
done
$T model verify --model state/models/model-v2.signed --root roots/1.root
# A revoked gateway is shut out at its next call.
$T device revoke --config agg.toml --device-id clinic-0 | prints "revoked" || { echo "FAIL: revoke"; exit 1; }
$T device list --config agg.toml | prints "clinic-0 .*REVOKED" || { echo "FAIL: device list"; exit 1; }
echo "PASS: installed library, example gateway over TLS with enrolled devices, one federated round"
