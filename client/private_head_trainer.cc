#include "tinyfed/client/private_head_trainer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "tinyfed/dp/clipping.h"

namespace tinyfed::client {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

absl::Status CheckTask(const PrivateTrainingTask& t, uint32_t classes) {
  if (!(t.sampling_rate > 0.0 && t.sampling_rate <= 1.0)) {
    return InvalidArgumentError(StrCat("sampling rate must be in (0, 1], got ", t.sampling_rate));
  }
  if (!(t.noise_multiplier > 0.0) || !std::isfinite(t.noise_multiplier)) {
    return InvalidArgumentError(StrCat("noise multiplier must be positive, got ", t.noise_multiplier));
  }
  if (!(t.clip > 0.0) || !std::isfinite(t.clip))
    return InvalidArgumentError(StrCat("clip must be positive, got ", t.clip));
  if (t.steps < 1 || t.steps > 100000)
    return InvalidArgumentError(StrCat("steps must be in [1, 100000], got ", t.steps));
  if (!(t.learning_rate > 0.0f) || !(t.momentum >= 0.0f && t.momentum < 1.0f) || !(t.weight_decay >= 0.0f)) {
    return InvalidArgumentError(StrCat("learning rate ", t.learning_rate, ", momentum ", t.momentum,
                                       " or weight decay ", t.weight_decay, " out of range"));
  }
  if (!t.class_weights.empty()) {
    if (t.class_weights.size() != classes) {
      return InvalidArgumentError(StrCat(t.class_weights.size(), " class weights for ", classes, " classes"));
    }
    for (float w : t.class_weights) {
      if (!(w > 0.0f) || !std::isfinite(w)) return InvalidArgumentError(StrCat("class weight ", w, " is not positive"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TrainHeadPrivately(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels,
                                const PrivateTrainingTask& task, dp::SecureRandom& rng) {
  const size_t dim = head->in_features(), classes = head->num_classes();
  if (dim == 0 || classes < 2 || head->weights_size() != static_cast<int>(dim * classes) ||
      head->bias_size() != static_cast<int>(classes)) {
    return InvalidArgumentError(StrCat("malformed head: ", classes, " classes of ", dim, " features with ",
                                       head->weights_size(), " weights and ", head->bias_size(), " biases"));
  }
  if (labels.empty() || embeddings.size() != dim * labels.size()) {
    return InvalidArgumentError(
        StrCat(embeddings.size(), " embedding values for ", labels.size(), " labels of ", dim, " features each"));
  }
  for (int l : labels) {
    if (l < 0 || static_cast<size_t>(l) >= classes) {
      return InvalidArgumentError(StrCat("label ", l, " outside [0, ", classes, ")"));
    }
  }
  if (auto s = CheckTask(task, static_cast<uint32_t>(classes)); !s.ok()) return s;

  const size_t params = classes * (dim + 1);  // weights row-major, then biases
  std::vector<double> w(params), velocity(params, 0.0), sum(params), logits(classes);
  std::copy(head->weights().begin(), head->weights().end(), w.begin());
  std::copy(head->bias().begin(), head->bias().end(), w.begin() + static_cast<std::ptrdiff_t>(classes * dim));
  // Sampled with probability floor(q 2^53) / 2^53 <= q: never more often
  // than the accountant is told.
  const auto threshold = static_cast<uint64_t>(std::floor(task.sampling_rate * 0x1.0p53));
  const double expected_batch = task.sampling_rate * static_cast<double>(labels.size());
  const double* bias = w.data() + classes * dim;
  // Weights apply after the clip, scaled so the largest is 1: a weighted
  // patient's contribution stays within the clip (weighting before it would
  // be undone by it for the classes that need it most).
  std::vector<double> weight(classes, 1.0);
  if (!task.class_weights.empty()) {
    const double largest = *std::max_element(task.class_weights.begin(), task.class_weights.end());
    for (size_t c = 0; c < classes; ++c) weight[c] = task.class_weights[c] / largest;
  }

  for (int64_t step = 0; step < task.steps; ++step) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (size_t i = 0; i < labels.size(); ++i) {
      if ((rng.Next64() >> 11) >= threshold) continue;
      const float* x = embeddings.data() + i * dim;
      // Softmax of the logits, then the residual p - onehot(y).
      double max_logit = -INFINITY, x_norm2 = 1.0;  // the bias input counts as a 1
      for (size_t d = 0; d < dim; ++d) x_norm2 += static_cast<double>(x[d]) * x[d];
      for (size_t c = 0; c < classes; ++c) {
        double z = bias[c];
        const double* row = w.data() + c * dim;
        for (size_t d = 0; d < dim; ++d) z += row[d] * x[d];
        logits[c] = z;
        max_logit = std::max(max_logit, z);
      }
      double total = 0.0;
      for (double& z : logits) total += (z = std::exp(z - max_logit));
      double residual_norm2 = 0.0;
      for (size_t c = 0; c < classes; ++c) {
        logits[c] = logits[c] / total - (static_cast<int>(c) == labels[i] ? 1.0 : 0.0);
        residual_norm2 += logits[c] * logits[c];
      }
      // |(p - y) [x, 1]| = |p - y| |[x, 1]|: clip without forming the gradient.
      const double norm = std::sqrt(residual_norm2 * x_norm2);
      const double scale = (norm > task.clip ? task.clip / norm : 1.0) * weight[static_cast<size_t>(labels[i])];
      for (size_t c = 0; c < classes; ++c) {
        const double r = scale * logits[c];
        double* row = sum.data() + c * dim;
        for (size_t d = 0; d < dim; ++d) row[d] += r * x[d];
        sum[classes * dim + c] += r;
      }
    }
    dp::AddGaussianNoise(std::span<double>(sum), task.noise_multiplier * task.clip, rng);
    for (size_t k = 0; k < params; ++k) {
      const double gradient = sum[k] / expected_batch + task.weight_decay * w[k];
      velocity[k] = task.momentum * velocity[k] + gradient;
      w[k] -= task.learning_rate * velocity[k];
    }
  }
  for (size_t k = 0; k < classes * dim; ++k) head->set_weights(static_cast<int>(k), static_cast<float>(w[k]));
  for (size_t c = 0; c < classes; ++c) head->set_bias(static_cast<int>(c), static_cast<float>(bias[c]));
  return absl::OkStatus();
}

}  // namespace tinyfed::client
