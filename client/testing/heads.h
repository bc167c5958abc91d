// Test helpers for head training: a zero head, embeddings whose class shows
// in one coordinate (like a trained backbone's), argmax accuracy, and the
// tiny classifier's data as gateway samples.
#ifndef TINYFED_CLIENT_TESTING_HEADS_H_
#define TINYFED_CLIENT_TESTING_HEADS_H_

#include <random>
#include <vector>

#include "models/testing/tiny_classifier.h"
#include "tinyfed/client/sample_store.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::client::testing {

inline v1::Head ZeroHead(uint32_t dim, uint32_t classes) {
  v1::Head h;
  h.set_in_features(dim);
  h.set_num_classes(classes);
  for (uint32_t i = 0; i < dim * classes; ++i) h.add_weights(0.0f);
  for (uint32_t c = 0; c < classes; ++c) h.add_bias(0.0f);
  return h;
}

inline void Separable(int n, uint32_t dim, uint32_t classes, std::vector<float>* x, std::vector<int>* y,
                      uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  for (int i = 0; i < n; ++i) {
    const int label = i % static_cast<int>(classes);
    y->push_back(label);
    for (uint32_t d = 0; d < dim; ++d) x->push_back(noise(rng) + (d == static_cast<uint32_t>(label) ? 2.0f : 0.0f));
  }
}

inline double Accuracy(const v1::Head& h, const std::vector<float>& x, const std::vector<int>& y) {
  const uint32_t dim = h.in_features(), classes = h.num_classes();
  int correct = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    int best = 0;
    float best_logit = -1e30f;
    for (uint32_t c = 0; c < classes; ++c) {
      float l = h.bias(static_cast<int>(c));
      for (uint32_t d = 0; d < dim; ++d) l += h.weights(static_cast<int>(c * dim + d)) * x[i * dim + d];
      if (l > best_logit) {
        best_logit = l;
        best = static_cast<int>(c);
      }
    }
    correct += best == y[i];
  }
  return static_cast<double>(correct) / static_cast<double>(y.size());
}

// models::testing::TinyClassifierData as samples a gateway stores.
inline std::vector<Sample> TinySamples(const models::Dataset& data) {
  std::vector<Sample> out;
  for (size_t i = 0; i < data.size(); ++i) {
    const auto x = data.sample(i);
    out.push_back({.features = std::vector<float>(x.begin(), x.end()), .label = data.labels[i]});
  }
  return out;
}

}  // namespace tinyfed::client::testing

#endif  // TINYFED_CLIENT_TESTING_HEADS_H_
