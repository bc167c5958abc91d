// A clinic's local training per round, on cached embeddings (the clinics-small
// shape: 500 samples, 84-value embeddings, 10 classes):
//   BM_TrainHead          today's non-private round: 1 epoch of minibatch SGD
//                         (batch 32) through the backbone trainer
//   BM_TrainHeadPrivately DP-SGD over the same epoch: 1 / q Poisson-sampled
//                         steps at q = 0.05, per-sample clipping and secure
//                         Gaussian noise on every step
// Both portable C++ (no CPU-specific path); the ratio of the two medians is
// the cost of patient-level privacy in a round.
#include <benchmark/benchmark.h>

#include <random>

#include "tinyfed/client/head_trainer.h"
#include "tinyfed/client/private_head_trainer.h"

namespace tinyfed::client {
namespace {

constexpr uint32_t kDim = 84, kClasses = 10;
constexpr int kSamples = 500;

struct Data {
  std::vector<float> x;
  std::vector<int> y;
};

const Data& Samples() {
  static const Data d = [] {
    Data out;
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (int i = 0; i < kSamples; ++i) {
      out.y.push_back(i % static_cast<int>(kClasses));
      for (uint32_t j = 0; j < kDim; ++j) out.x.push_back(g(rng) + (j == static_cast<uint32_t>(i % 10) ? 2.0f : 0.0f));
    }
    return out;
  }();
  return d;
}

v1::Head ZeroHead() {
  v1::Head h;
  h.set_in_features(kDim);
  h.set_num_classes(kClasses);
  h.mutable_weights()->Resize(static_cast<int>(kDim * kClasses), 0.0f);
  h.mutable_bias()->Resize(static_cast<int>(kClasses), 0.0f);
  return h;
}

void BM_TrainHead(benchmark::State& state) {
  const Data& d = Samples();
  const HeadTrainingTask task{.epochs = 1,
                              .batch_size = 32,
                              .learning_rate = 0.1f,
                              .momentum = 0.5f,
                              .weight_decay = 0.0f,
                              .seed = 1,
                              .cosine_decay = false};
  for (auto _ : state) {
    v1::Head head = ZeroHead();
    if (!TrainHead(&head, d.x, d.y, task).ok()) state.SkipWithError("training failed");
    benchmark::DoNotOptimize(head);
  }
}
BENCHMARK(BM_TrainHead)->Unit(benchmark::kMillisecond);

void BM_TrainHeadPrivately(benchmark::State& state) {
  const Data& d = Samples();
  const PrivateTrainingTask task{.sampling_rate = 0.05,
                                 .noise_multiplier = 1.2,
                                 .clip = 1.0,
                                 .steps = 20,
                                 .learning_rate = 0.2f,
                                 .momentum = 0.5f,
                                 .weight_decay = 0.0f,
                                 .class_weights = {}};
  auto rng = dp::SecureRandom::FromOsEntropy();
  for (auto _ : state) {
    v1::Head head = ZeroHead();
    if (!TrainHeadPrivately(&head, d.x, d.y, task, *rng).ok()) state.SkipWithError("training failed");
    benchmark::DoNotOptimize(head);
  }
}
BENCHMARK(BM_TrainHeadPrivately)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tinyfed::client

BENCHMARK_MAIN();
