#include "tinyfed/models/evaluate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "models/internal/float_network.h"

namespace tinyfed::models {

ConfusionMatrix::ConfusionMatrix(int num_classes)
    : num_classes_(num_classes), counts_(static_cast<size_t>(num_classes) * static_cast<size_t>(num_classes), 0) {}

void ConfusionMatrix::Add(int truth, int predicted) {
  ++counts_[static_cast<size_t>(truth) * static_cast<size_t>(num_classes_) + static_cast<size_t>(predicted)];
  ++total_;
}

uint64_t ConfusionMatrix::count(int truth, int predicted) const {
  return counts_[static_cast<size_t>(truth) * static_cast<size_t>(num_classes_) + static_cast<size_t>(predicted)];
}

double ConfusionMatrix::accuracy() const {
  uint64_t correct = 0;
  for (int c = 0; c < num_classes_; ++c) correct += count(c, c);
  return total_ ? static_cast<double>(correct) / static_cast<double>(total_) : 0.0;
}

double ConfusionMatrix::sensitivity(int c) const {
  uint64_t positives = 0;
  for (int p = 0; p < num_classes_; ++p) positives += count(c, p);
  return positives ? static_cast<double>(count(c, c)) / static_cast<double>(positives)
                   : std::numeric_limits<double>::quiet_NaN();
}

double ConfusionMatrix::specificity(int c) const {
  uint64_t negatives = 0, true_negatives = 0;
  for (int t = 0; t < num_classes_; ++t) {
    if (t == c) continue;
    for (int p = 0; p < num_classes_; ++p) {
      negatives += count(t, p);
      if (p != c) true_negatives += count(t, p);
    }
  }
  return negatives ? static_cast<double>(true_negatives) / static_cast<double>(negatives)
                   : std::numeric_limits<double>::quiet_NaN();
}

absl::StatusOr<ConfusionMatrix> Evaluate(const v1::ModelBundle& bundle, const Dataset& data, KernelSet kernels) {
  if (bundle.precision() == v1::PRECISION_INT8) {
    auto interpreter = Interpreter::Create(bundle, kernels);
    if (!interpreter.ok()) return interpreter.status();
    return Evaluate(**interpreter, data);
  }
  auto net = internal::FloatNetwork::Create(bundle);
  if (!net.ok()) return net.status();
  if (auto s = internal::CheckDataFits(*net, data); !s.ok()) return s;
  ConfusionMatrix m(net->num_classes());
  constexpr size_t kBatch = 256;
  const auto classes = static_cast<size_t>(net->num_classes());
  for (size_t first = 0; first < data.size(); first += kBatch) {
    const size_t n = std::min(kBatch, data.size() - first);
    net->Forward(std::span(data.features).subspan(first * data.feature_size(), n * data.feature_size()),
                 static_cast<int>(n));
    for (size_t k = 0; k < n; ++k) {
      const auto row = net->logits().subspan(k * classes, classes);
      m.Add(data.labels[first + k], static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin()));
    }
  }
  return m;
}

absl::StatusOr<ConfusionMatrix> Evaluate(Interpreter& it, const Dataset& data) {
  if (data.feature_size() != it.input_size() || data.num_classes() != it.num_classes()) {
    return absl::InvalidArgumentError(absl::StrCat(data.source, " has samples of ", data.feature_size(), " values in ",
                                                   data.num_classes(), " classes; the model takes ", it.input_size(),
                                                   " values in ", it.num_classes()));
  }
  ConfusionMatrix m(it.num_classes());
  for (size_t i = 0; i < data.size(); ++i) m.Add(data.labels[i], it.Predict(data.sample(i)).label);
  return m;
}

double McNemarPValue(uint32_t wins, uint32_t losses) {
  const uint32_t n = wins + losses;
  if (n == 0) return 1.0;
  const double log_half_n = -static_cast<double>(n) * std::log(2.0);
  double p = 0.0;
  for (uint32_t k = wins; k <= n; ++k) {
    p += std::exp(std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0) + log_half_n);
  }
  return std::min(1.0, p);
}

}  // namespace tinyfed::models
