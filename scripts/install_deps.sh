#!/usr/bin/env bash
# Installs the Debian packages tinyfed builds, tests and demos with. Idempotent:
# it asks apt only for what is missing, so a second run costs one dpkg query.
set -euo pipefail
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)

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
# The cross build for 64-bit ARM gateways (`make cross-arm64`): the cross
# compiler, qemu-user for its tests, and the arm64 multiarch libraries the
# client library stands on.
arm64=0
if [[ "${TINYFED_WITH_ARM64:-0}" == 1 ]]; then
  arm64=1
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo_cmd[@]}" dpkg --add-architecture arm64
  fi
  packages+=(crossbuild-essential-arm64 qemu-user-static
    libprotobuf-dev:arm64 libgrpc++-dev:arm64 libabsl-dev:arm64 libspdlog-dev:arm64 libfmt-dev:arm64
    zlib1g-dev:arm64 libsqlite3-dev:arm64 libsqlitecpp-dev:arm64 libsodium-dev:arm64 libfftw3-dev:arm64
    libgtest-dev:arm64 libgmock-dev:arm64 libcpp-httplib-dev:arm64 libsystemd-dev:arm64 libzstd-dev:arm64
    libtomlplusplus-dev:arm64)
fi
# The PyTorch and XNNPACK peers for bench/: only `make bench` asks for them.
if [[ "${TINYFED_WITH_BENCH_PEERS:-0}" == 1 ]]; then
  packages+=(python3-torch python3-numpy libxnnpack-dev libpthreadpool-dev)
fi

missing=()
for p in "${packages[@]}"; do
  # One status line per installed architecture (amd64 and arm64 after
  # `make cross-arm64`).
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -qx "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  # Both architectures' copies of a library must be the same version, so apt
  # may upgrade shared packages (dpkg's perl library among them); named in the
  # same call, the native toolchain is upgraded with them, not removed.
  ((arm64)) && missing+=(build-essential dpkg-dev g++)
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
