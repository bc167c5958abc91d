#!/usr/bin/env bash
# The container images built and run on this machine: deploy/container's
# build (a Debian 12 base from mmdebstrap, the tested binary as the build
# context) makes the aggregator and gateway images; the aggregator runs in
# one as user 10001 with a read-only root and its state on a volume, and
# answers the host's gRPC health check, its HEALTHCHECK command (on the
# test's port) and a metrics scrape; three gateway containers take part in
# two rounds with it; a stop drains and exits cleanly.
#
#   tests/container_test.sh BUILD_DIR SOURCE_DIR DATA_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2 DATA=$3
CSV=$DATA/breast_cancer.csv
[[ -f $CSV ]] || { echo "skipping: $CSV missing (scripts/fetch_data.sh)"; exit 0; }
for tool in podman mmdebstrap; do
  command -v $tool >/dev/null || { echo "FAIL: $tool is missing (scripts/install_deps.sh installs it)"; exit 1; }
done
T=$BUILD/tools/tinyfed
# This sandbox has cgroup v1 without systemd and no CAP_SYS_RESOURCE: runc
# with cgroupfs, and container limits no higher than the caller's.
export PODMAN_FLAGS="--runtime runc --cgroup-manager cgroupfs"
# shellcheck disable=SC2206
podman=(podman $PODMAN_FLAGS)
limits=(--ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit nproc=4096:4096)
TAG=test-$$
WORK=$(mktemp -d)
cleanup() {
  "${podman[@]}" rm -f -t 0 tinyfed-agg-$TAG tinyfed-gw0-$TAG tinyfed-gw1-$TAG tinyfed-gw2-$TAG >/dev/null 2>&1 || true
  "${podman[@]}" rmi -f localhost/tinyfed-aggregator:$TAG localhost/tinyfed-gateway:$TAG >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; "${podman[@]}" logs tinyfed-agg-$TAG 2>&1 | tail -n 20 || true; exit 1; }
wait_for() {
  local seconds=$1
  shift
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

start=$(date +%s)
"$SOURCE/deploy/container/build_images.sh" $TAG --binary "$T" || fail "the images did not build"
echo "images built in $(($(date +%s) - start)) s"

cd "$WORK"
source "$SOURCE/tests/lib/tls_federation.sh"
tls_federation_setup "$T" "$CSV" 3
# A certificate for the name the image's HEALTHCHECK dials (and 127.0.0.1).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=aggregator.tinyfed \
  -addext subjectAltName=DNS:aggregator.tinyfed,IP:127.0.0.1 -keyout key.pem -out cert.pem 2>/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ops=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p etc/config etc/keys etc/roots etc/model etc/tls state gw0 gw1 gw2
cp int8.bundle etc/model/initial.bundle
cp publishing.key etc/keys/
cp roots/*.root etc/roots/
cp cert.pem etc/tls/tls.crt
cp key.pem etc/tls/tls.key
cp cert.pem etc/tls/ca.crt
cat > etc/config/aggregator.toml <<TOML
listen = "127.0.0.1:$port"
state_dir = "/var/lib/tinyfed"
initial_model = "/etc/tinyfed/model/initial.bundle"
publishing_key = "/etc/tinyfed/keys/publishing.key"
roots_dir = "/etc/tinyfed/roots"
[rounds]
cohort_size = 3
min_cohort = 3
reset_head = true
poll_interval_ms = 200
[dp]
noise_multiplier = 1.0
epsilon_budget = 1000000
[security]
tls_certificate = "/etc/tinyfed/tls/tls.crt"
tls_private_key = "/etc/tinyfed/tls/tls.key"
[operator]
listen = "127.0.0.1:$ops"
drain_timeout = 1
TOML
# The same config with the host's paths, for `tinyfed enroll` beside it.
sed -e "s|/var/lib/tinyfed|$WORK/state|" -e "s|/etc/tinyfed|$WORK/etc|g" etc/config/aggregator.toml > host.toml
chown -R 10001:10001 etc state gw0 gw1 gw2
chmod -R go-rwx etc
# The image's HEALTHCHECK, on this test's port instead of 7443 (host network).
"${podman[@]}" run -d --name tinyfed-agg-$TAG --network host --read-only "${limits[@]}" \
  -v "$WORK/etc:/etc/tinyfed:ro" -v "$WORK/state:/var/lib/tinyfed" \
  --health-cmd "tinyfed aggregator health --address 127.0.0.1:$port --ca /etc/tinyfed/tls/ca.crt --tls-server-name aggregator.tinyfed" \
  localhost/tinyfed-aggregator:$TAG >/dev/null || fail "the aggregator container did not start"
serving() { $T aggregator health --address "127.0.0.1:$port" --ca cert.pem | grep -qx SERVING; }
wait_for 30 serving || fail "the containerized aggregator is not SERVING"
[[ $("${podman[@]}" exec tinyfed-agg-$TAG id -u) == 10001 ]] || fail "the aggregator does not run as 10001"
"${podman[@]}" exec tinyfed-agg-$TAG sh -c 'touch /usr/bin/x 2>/dev/null' && fail "the root file system is writable"
"${podman[@]}" healthcheck run tinyfed-agg-$TAG 2>/dev/null || fail "the HEALTHCHECK command fails in the container"
python3 -c "
import ssl, urllib.request
body = urllib.request.urlopen('https://127.0.0.1:$ops/metrics', context=ssl.create_default_context(cafile='cert.pem')).read()
assert b'tinyfed_serving 1' in body, body[:400]" || fail "no metrics from the container"
echo "aggregator container: SERVING as uid 10001, read-only root, HEALTHCHECK healthy, metrics scraped"

# Three gateways, each in its own container, federate with it.
for c in 0 1 2; do
  $T client add-samples --data-dir gw$c --csv clinic$c.csv >/dev/null
  token=$($T enroll --config host.toml --device-id clinic-$c 2>/dev/null)
  chown -R 10001:10001 gw$c
  "${podman[@]}" run -d --name tinyfed-gw$c-$TAG --network host --read-only "${limits[@]}" \
    -v "$WORK/gw$c:/var/lib/tinyfed" -v "$WORK/etc/roots:/etc/tinyfed/roots:ro" -v "$WORK/etc/tls:/etc/tinyfed/tls:ro" \
    localhost/tinyfed-gateway:$TAG client run --device-id clinic-$c --data-dir /var/lib/tinyfed \
    --aggregator "127.0.0.1:$port" --root /etc/tinyfed/roots/1.root --ca /etc/tinyfed/tls/ca.crt \
    --enroll-token "$token" --max-rounds 2 >/dev/null || fail "gateway container $c did not start"
done
published() { "${podman[@]}" logs tinyfed-agg-$TAG 2>&1 | grep -c '"event":"round_done"' | grep -qx 2; }
wait_for 120 published || fail "the containers did not complete 2 rounds"
for c in 0 1 2; do
  [[ $("${podman[@]}" wait tinyfed-gw$c-$TAG) == 0 ]] || fail "gateway container $c exited with an error"
done
echo "gateway containers: 3 gateways completed 2 rounds with the containerized aggregator"

"${podman[@]}" stop -t 20 tinyfed-agg-$TAG >/dev/null
[[ $("${podman[@]}" inspect tinyfed-agg-$TAG --format '{{.State.ExitCode}}') == 0 ]] || fail "non-zero exit on stop"
"${podman[@]}" logs tinyfed-agg-$TAG 2>&1 | grep -q '"event":"aggregator_stopping"' || fail "no clean stop"
[[ -f state/aggregator.db && -f state/models/model-v3.signed ]] || fail "the state volume does not hold the models"
echo "PASS"
