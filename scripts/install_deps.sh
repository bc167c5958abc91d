#!/usr/bin/env bash
# Installs the Debian packages tinyfed builds, tests and demos with. Idempotent:
# it asks apt only for what is missing, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache clang-14 clang-format-14 libclang-rt-14-dev
  protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev
  libsodium-dev libfftw3-dev libeigen3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libsqlite3-dev libsqlitecpp-dev libzstd-dev zlib1g-dev
  libonnx-dev python3-onnx python3-numpy
  dataset-fashion-mnist python3 gnuplot-nox openssl
  python3-grpcio python3-protobuf python3-nacl
  libcpp-httplib-dev libsystemd-dev prometheus chromium systemd podman runc mmdebstrap
)
# kubectl renders deploy/kubernetes; node and npm run its schema check. A
# machine that has them from elsewhere keeps them (Debian's would conflict).
command -v kubectl >/dev/null || packages+=(kubernetes-client)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
# The PyTorch and XNNPACK peers for bench/: only `make bench` asks for them.
if [[ "${TINYFED_WITH_BENCH_PEERS:-0}" == 1 ]]; then
  packages+=(python3-torch python3-numpy libxnnpack-dev libpthreadpool-dev)
fi

missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
