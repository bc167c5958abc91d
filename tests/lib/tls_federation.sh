# Sourced by the scripts that run a real federation over TLS on loopback
# (tests/attacker_test.sh, tests/operations_test.sh, tests/restart_rejoin_test.sh,
# bench/connection_flood.sh, bench/aggregator_kills.sh): `tinyfed aggregator`
# and `tinyfed client run` processes on Breast Cancer Wisconsin shares.
#
#   tls_federation_setup T CSV CLINICS   in an empty working directory:
#       float.bundle, int8.bundle, keys, roots/, cert.pem/key.pem, clinicN.csv
#   tls_federation_paths                 the path keys of an aggregator config for that directory
#   tls_federation_config MIN_COHORT SELECTION_SECONDS
#                                        a whole config: the paths, six gateways a round with
#                                        short deadlines, DP, TLS; it ends in [security], so
#                                        a caller may append keys of that section
#   tls_federation_wait_listening DIR    waits for DIR/state/listening, prints the address
#   tls_federation_start_clients T DIR ADDR CLINICS [ARGS...]
#                                        enrolls and starts clinic-0..N-1; their pids in CLIENT_PIDS

tls_federation_setup() {
  local T=$1 CSV=$2 clinics=$3
  $T backbone train --data "$CSV" --holdout 0.5 --part train --arch mlp --epochs 20 --out float.bundle >/dev/null
  $T model quantize --data "$CSV" --holdout 0.5 --part train --model float.bundle --out int8.bundle >/dev/null
  $T keys generate --secret root.key --public root.pub >/dev/null
  $T keys generate --secret publishing.key --public publishing.pub >/dev/null
  $T root new --roots roots --federation tls-test/breast-cancer --root-key root.key \
    --publishing-key publishing.pub >/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=tinyfed-tls-test \
    -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem 2>/dev/null
  local c
  for c in $(seq 0 $((clinics - 1))); do
    awk -v c=$c -v n=$clinics 'NR == 1 { next } (NR - 2) % n == c' "$CSV" > clinic$c.csv
  done
}

tls_federation_paths() {
  printf 'listen = "127.0.0.1:0"\nstate_dir = "state"\ninitial_model = "%s/int8.bundle"\n' "$PWD"
  printf 'publishing_key = "%s/publishing.key"\nroots_dir = "%s/roots"\n' "$PWD" "$PWD"
}

tls_federation_config() {
  local min_cohort=$1 selection=$2
  tls_federation_paths
  cat <<TOML
[rounds]
cohort_size = 6
min_cohort = $min_cohort
reset_head = true
poll_interval_ms = 200
[deadlines]
selection = $selection
training = 20
share_keys = 10
masked_input = 10
unmasking = 10
[dp]
noise_multiplier = 1.0
epsilon_budget = 1000000
[security]
tls_certificate = "$PWD/cert.pem"
tls_private_key = "$PWD/key.pem"
TOML
}

tls_federation_wait_listening() {
  local dir=$1
  for _ in $(seq 200); do [[ -s $dir/state/listening ]] && break; sleep 0.1; done
  [[ -s $dir/state/listening ]] || { cat "$dir/aggregator.log"; echo "FAIL: the aggregator did not start" >&2; return 1; }
  cat "$dir/state/listening"
}

tls_federation_start_clients() {
  local T=$1 dir=$2 addr=$3 clinics=$4
  shift 4
  CLIENT_PIDS=()
  local c token
  for c in $(seq 0 $((clinics - 1))); do
    $T client add-samples --data-dir "$dir/gw$c" --csv clinic$c.csv >/dev/null
    token=$($T enroll --config "$dir/agg.toml" --device-id clinic-$c 2>/dev/null)
    $T client run --device-id clinic-$c --data-dir "$dir/gw$c" --aggregator "$addr" --root roots/1.root \
      --ca cert.pem --enroll-token "$token" "$@" > "$dir/gw$c.log" 2>&1 &
    CLIENT_PIDS+=($!)
  done
}
