# Entry points. Each target installs what is missing (scripts/install_deps.sh),
# configures and builds before it runs, so a fresh Debian 12 machine needs
# nothing else.
JOBS  ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

ARM64_BUILD ?= build-arm64

.PHONY: all deps build demo demo-models test test-fast test-asan test-arm64 arm64-configure bench fuzz fuzz-build \
        cross-arm64 clean

all: build

deps:
	@scripts/install_deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The main job: train, quantize and evaluate the default backbones on real data.
demo: build
	@scripts/demo.sh $(BUILD)/tools/tinyfed

demo-models: build
	@scripts/demo_models.sh $(BUILD)/tools/tinyfed

# Every test: the NEON kernels under qemu-user, the sanitizer build (ASan +
# UBSan), then the normal build, whose ctest summary is the closing line.
test: test-arm64 test-asan test-fast

test-fast: build
	@scripts/fetch_data.sh >/dev/null
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@scripts/fetch_data.sh >/dev/null
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTINYFED_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow

# The client library for 64-bit ARM gateways and its unit tests under
# qemu-user (cmake/aarch64-linux-gnu.cmake says what it builds), the NEON
# kernels against the reference ones among them. Left out: the cases whose
# child process is killed mid-write (a process forked under qemu-user hangs).
cross-arm64: arm64-configure
	cmake --build $(ARM64_BUILD) -j $(JOBS)
	cd $(ARM64_BUILD) && GTEST_FILTER='-*KillNine*:DirectoryLock.*' ctest --output-on-failure -j $(JOBS) -L unit

# What `make test` runs for ARM: the kernel and interpreter tests (every NEON
# kernel bit-exact against the reference) built for aarch64 and run under
# qemu-user; about a minute from a cold build.
test-arm64: arm64-configure
	cmake --build $(ARM64_BUILD) -j $(JOBS) --target models_kernels_test models_interpreter_test
	cd $(ARM64_BUILD) && ctest --output-on-failure -R '^models_(kernels|interpreter)_test$$'

arm64-configure:
	@TINYFED_WITH_ARM64=1 scripts/install_deps.sh
	cmake -S . -B $(ARM64_BUILD) -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
	  $(CMAKE_FLAGS)

bench:
	@TINYFED_WITH_BENCH_PEERS=1 scripts/install_deps.sh
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DTINYFED_BUILD_BENCHMARKS=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	@bench/run_models_bench.sh $(BUILD)
	$(BUILD)/bench/dp_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
	  --benchmark_out=$(BUILD)/bench/dp_bench.json --benchmark_out_format=json
	$(BUILD)/bench/secagg_bench --benchmark_out=$(BUILD)/bench/secagg_bench.json --benchmark_out_format=json
	$(BUILD)/bench/head_training_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
	  --benchmark_out=$(BUILD)/bench/head_training_bench.json --benchmark_out_format=json
	$(BUILD)/bench/round_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
	  --benchmark_out=$(BUILD)/bench/round_bench.json --benchmark_out_format=json
	$(BUILD)/bench/sim_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
	  --benchmark_out=$(BUILD)/bench/sim_bench.json --benchmark_out_format=json

fuzz-build: deps
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTINYFED_BUILD_FUZZERS=ON -DTINYFED_BUILD_TESTS=OFF -DTINYFED_SANITIZE=address,undefined
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# Runs each fuzzer for FUZZ_SECONDS from its seed corpus.
fuzz: fuzz-build
	@fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(ARM64_BUILD)
