// Client-side cost of distributed DP on a 100,000-value update, and what the
// encoding costs on the wire:
//   BM_DdgEncode         clip, rotate, scale, round, discrete Gaussian noise,
//                        reduce mod 2^b and pack at b bits (the whole client step)
//   BM_Rotation/d        the random rotation alone (d values: a head of 850,
//                        and the 100,000 above)
//   BM_DiscreteGaussian  one exact sample at the per-client sigma
//   BM_DdgRoundTrip/n/b  n clients encode, sum mod 2^b, decode (b = 0: the
//                        bits ChooseDdgParams picks); counters: bits per
//                        coordinate on the wire and the measured wrap-around rate
#include <benchmark/benchmark.h>

#include <random>

#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/rotation.h"
#include "tinyfed/proto/packing.h"

namespace tinyfed::dp {
namespace {

constexpr size_t kDimension = 100000;

DdgParams Params(int clients, int bits = 16) {
  DdgConfig c;
  c.dimension = kDimension;
  c.clip = 1.0;
  c.bits = bits;
  c.expected_clients = clients;
  c.noise_multiplier = 1.0;
  auto p = ChooseDdgParams(c);
  if (!p.ok()) std::abort();
  return *p;
}

std::vector<float> Update(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.01f);
  std::vector<float> u(kDimension);
  for (float& v : u) v = g(rng);
  return u;
}

void BM_DdgEncode(benchmark::State& state) {
  const DdgParams p = Params(20);
  const auto update = Update(1);
  auto rng = SecureRandom::FromOsEntropy();
  Seed seed{};
  for (auto _ : state) {
    auto encoded = DdgEncode(p, update, seed, *rng);
    benchmark::DoNotOptimize(proto::PackBits(*encoded, p.config.bits));
  }
  state.counters["dimension"] = kDimension;
}

void BM_Rotation(benchmark::State& state) {
  std::vector<double> x(static_cast<size_t>(state.range(0)), 0.5);
  Seed seed{};
  for (auto _ : state) {
    RandomRotation(x, seed);
    benchmark::ClobberMemory();
  }
}

void BM_DiscreteGaussian(benchmark::State& state) {
  const DdgParams p = Params(20);
  auto sampler = DiscreteGaussianSampler::Create(p.local_variance);
  auto rng = SecureRandom::FromOsEntropy();
  for (auto _ : state) benchmark::DoNotOptimize(sampler->Sample(*rng));
  state.counters["sigma"] = std::sqrt(p.local_variance.value());
}

void BM_DdgRoundTrip(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const DdgParams p = Params(n, static_cast<int>(state.range(1)));
  auto rng = SecureRandom::FromOsEntropy();
  Seed seed{};
  uint64_t wrapped = 0, coordinates = 0;
  for (auto _ : state) {
    std::vector<int64_t> exact(kDimension, 0);
    std::vector<uint32_t> sum(kDimension, 0);
    const uint64_t mask = (uint64_t{1} << p.config.bits) - 1;
    for (int i = 0; i < n; ++i) {
      auto z = DdgQuantize(p, Update(static_cast<uint32_t>(i)), seed, *rng);
      const auto reduced = ReduceModulo(*z, p.config.bits);
      for (size_t k = 0; k < sum.size(); ++k) {
        exact[k] += (*z)[k];
        sum[k] = static_cast<uint32_t>((uint64_t{sum[k]} + reduced[k]) & mask);
      }
    }
    const int64_t half = int64_t{1} << (p.config.bits - 1);
    for (int64_t v : exact) wrapped += (v < -half || v >= half) ? 1 : 0;
    coordinates += exact.size();
    benchmark::DoNotOptimize(DdgDecodeSum(p, sum, seed));
  }
  state.counters["bits_per_coordinate"] = p.config.bits;  // the rotation pads nothing
  state.counters["wrap_rate"] = static_cast<double>(wrapped) / static_cast<double>(coordinates);
  state.counters["wrap_bound"] = p.wrap_probability;
  state.counters["scale"] = p.scale;
}

BENCHMARK(BM_DdgEncode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Rotation)->Arg(850)->Arg(kDimension)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DiscreteGaussian)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_DdgRoundTrip)->Args({20, 16})->Args({20, 0})->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace tinyfed::dp

BENCHMARK_MAIN();
