#!/usr/bin/env bash
# Runs every fuzzer in BUILD_DIR for SECONDS each from a fresh seed corpus and
# prints executions per fuzzer. A crash fails the run and leaves the input in
# BUILD_DIR/fuzz/artifacts/.
#   fuzz/run_fuzzers.sh BUILD_DIR SECONDS
set -euo pipefail
build=$1
seconds=$2
corpus="$build/fuzz/corpus"
artifacts="$build/fuzz/artifacts"
mkdir -p "$artifacts"
"$build/fuzz/write_fuzz_seeds" "$corpus"
for fuzzer in bundle_loader_fuzz secagg_fuzz aggregator_fuzz metadata_fuzz csv_fuzz onnx_import_fuzz; do
  log="$build/fuzz/$fuzzer.log"
  "$build/fuzz/$fuzzer" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" "$corpus/$fuzzer" >"$log" 2>&1 || {
      tail -n 40 "$log"; echo "fuzz: $fuzzer failed; input in $artifacts" >&2; exit 1; }
  execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  echo "fuzz: $fuzzer ran ${execs:-?} executions in ${seconds}s without a crash"
done
