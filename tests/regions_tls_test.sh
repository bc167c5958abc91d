#!/usr/bin/env bash
# Regions as deployed, over TLS on loopback: a national `tinyfed aggregator`
# (three regions a round), three regional ones ([upstream] with the national
# CA and a one-time enrollment token from `tinyfed enroll`), and three
# `tinyfed client run` gateways per region, pinning the national root and
# calling their region. Two national rounds complete with every clinic in
# the sum, and every gateway installs the national model v3 its region
# relayed.
#
#   tests/regions_tls_test.sh BUILD_DIR SOURCE_DIR DATA_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2 DATA=$3
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
T=$BUILD/tools/tinyfed
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
source "$SOURCE/tests/lib/tls_federation.sh"
tls_federation_setup "$T" "$CSV" 9

deadlines() {
  printf '[deadlines]\nselection = 20\ntraining = %s\nshare_keys = 10\nmasked_input = 10\nunmasking = 10\n' "$1"
}
security() { printf '[security]\ntls_certificate = "%s/cert.pem"\ntls_private_key = "%s/key.pem"\n' "$PWD" "$PWD"; }

mkdir national
{
  tls_federation_paths
  printf '[rounds]\nmax_rounds = 2\ncohort_size = 3\nmin_cohort = 3\nnational_clinics = 9\nreset_head = true\n'
  printf 'poll_interval_ms = 200\n'
  deadlines 60
  printf '[dp]\nnoise_multiplier = 1.0\nepsilon_budget = 1000000\n'
  security
} > national/agg.toml
(cd national && exec $T aggregator --config agg.toml > aggregator.log 2>&1) &
national=$(tls_federation_wait_listening national)

for r in 1 2 3; do
  mkdir region$r
  $T enroll --config national/agg.toml --device-id region-$r 2>/dev/null > region$r/upstream.token
  {
    printf 'listen = "127.0.0.1:0"\nstate_dir = "state"\nroots_dir = "%s/roots"\n' "$PWD"
    printf '[upstream]\naddress = "%s"\nca_certificate = "%s/cert.pem"\n' "$national" "$PWD"
    printf 'device_id = "region-%s"\nenrollment_token_file = "upstream.token"\n' $r
    printf '[rounds]\ncohort_size = 3\nmin_cohort = 3\npoll_interval_ms = 200\n'
    deadlines 20
    security
  } > region$r/agg.toml
  (cd region$r && exec $T aggregator --config agg.toml > aggregator.log 2>&1) &
  address=$(tls_federation_wait_listening region$r)
  for c in 0 1 2; do
    id=clinic-$r-$c
    $T client add-samples --data-dir "region$r/$id" --csv clinic$(((r - 1) * 3 + c)).csv >/dev/null
    token=$($T enroll --config region$r/agg.toml --device-id $id 2>/dev/null)
    $T client run --device-id $id --data-dir "region$r/$id" --aggregator "$address" --root roots/1.root \
      --ca cert.pem --enroll-token "$token" > "region$r/$id.log" 2>&1 &
  done
done

done_rounds() { grep -c "round [0-9]* done: 9 clinics in the sums of 3 regions" national/aggregator.log || true; }
for _ in $(seq 600); do (($(done_rounds) >= 2)) && break; sleep 0.2; done
if (($(done_rounds) < 2)); then
  tail -5 national/aggregator.log region*/aggregator.log
  echo "FAIL: the national federation did not complete two rounds with all nine clinics"
  exit 1
fi
mirrored() { grep -q "model v3 (release 3) of the national aggregator verified and mirrored" region$1/aggregator.log; }
for r in 1 2 3; do
  # A region mirrors the model once its link hears the result, a poll later.
  for _ in $(seq 100); do mirrored $r && break; sleep 0.2; done
  mirrored $r ||
    { tail -5 region$r/aggregator.log; echo "FAIL: region $r did not mirror model v3"; exit 1; }
  for c in 0 1 2; do
    for _ in $(seq 100); do grep -q "installed model v3" region$r/clinic-$r-$c.log && break; sleep 0.2; done
    grep -q "installed model v3" region$r/clinic-$r-$c.log ||
      { tail -5 region$r/clinic-$r-$c.log; echo "FAIL: clinic-$r-$c did not install model v3"; exit 1; }
  done
done
echo "PASS: 2 national rounds over TLS, 3 regions x 3 clinics, every gateway on the national model v3"
