#include "models/testing/tiny_classifier.h"

#include <cstdlib>
#include <random>

#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models::testing {

Dataset TinyClassifierData(size_t samples, uint64_t seed) {
  Dataset d;
  d.width = 8;
  d.label_names = {"a", "b", "c"};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  for (size_t i = 0; i < samples; ++i) {
    const int label = static_cast<int>(i % 3);
    for (int j = 0; j < 8; ++j) d.features.push_back((j % 3 == label ? 1.0f : 0.0f) + noise(rng));
    d.labels.push_back(label);
  }
  return d;
}

const v1::ModelBundle& TinyClassifier() {
  static const v1::ModelBundle* bundle = [] {
    const Dataset data = TinyClassifierData(300, 1);
    auto b = BuildBackbone(Architecture::kMlp, data, 1, {.mlp_hidden = {16, 8}});
    TrainOptions options;
    options.epochs = 5;
    if (!b.ok() || !Train(&*b, data, options).ok()) std::abort();
    auto q = QuantizePostTraining(*b, data, {});
    if (!q.ok()) std::abort();
    return new v1::ModelBundle(std::move(*q));
  }();
  return *bundle;
}

}  // namespace tinyfed::models::testing
