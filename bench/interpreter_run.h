// Timing one int8 bundle in a benchmark: batch 1, one thread,
// Interpreter::Invoke on an input already quantized (the figure that matters
// on a gateway). state.range(0) picks the kernels: 2 AVX-512 VNNI (skipped
// on a CPU without it), 1 AVX2, 0 reference.
// Counters: MACs, MACs per second, arena bytes, and MACs per cycle of the
// time-stamp counter (rdtsc). The TSC ticks at the CPU's reference clock, so
// under turbo the per-core-cycle figure is somewhat lower than
// MACs/tsc_cycle.
#ifndef TINYFED_BENCH_INTERPRETER_RUN_H_
#define TINYFED_BENCH_INTERPRETER_RUN_H_

#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include <random>
#include <string>

#include "tinyfed/models/interpreter.h"

namespace tinyfed::models {

inline void RunInterpreter(benchmark::State& state, const v1::ModelBundle& bundle) {
  const KernelSet kernels = state.range(0) == 2   ? KernelSet::kAvx512Vnni
                            : state.range(0) == 1 ? KernelSet::kAvx2
                                                  : KernelSet::kReference;
  auto interpreter = Interpreter::Create(bundle, kernels);
  if (!interpreter.ok()) {
    state.SkipWithError(std::string(interpreter.status().message()).c_str());
    return;
  }
  Interpreter& it = **interpreter;
  std::mt19937 rng(2);
  for (auto& v : it.quantized_input()) v = static_cast<int8_t>(rng());
  uint64_t macs = 0;
  for (const auto& l : it.layers()) macs += l.macs;
  uint64_t tsc = 0;
  for (auto _ : state) {
    const uint64_t start = __rdtsc();
    it.Invoke();
    tsc += __rdtsc() - start;
    benchmark::ClobberMemory();
  }
  state.SetLabel(it.kernel_set_name());
  state.counters["MACs"] = static_cast<double>(macs);
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(macs), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["MACs/tsc_cycle"] =
      static_cast<double>(macs) * static_cast<double>(state.iterations()) / static_cast<double>(tsc);
  state.counters["arena_bytes"] = static_cast<double>(it.arena_bytes());
}

}  // namespace tinyfed::models

#endif  // TINYFED_BENCH_INTERPRETER_RUN_H_
