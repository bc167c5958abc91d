#include "tinyfed/aggregator/server_optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tinyfed::aggregator {

absl::StatusOr<ServerOptimizerKind> ParseServerOptimizer(std::string_view name) {
  if (name == "fedavg") return ServerOptimizerKind::kFedAvg;
  if (name == "fedavgm") return ServerOptimizerKind::kFedAvgM;
  if (name == "fedadam") return ServerOptimizerKind::kFedAdam;
  if (name == "fedyogi") return ServerOptimizerKind::kFedYogi;
  return absl::InvalidArgumentError(absl::StrCat("unknown server optimizer '", std::string(name),
                                                 "' (expected fedavg, fedavgm, fedadam or fedyogi)"));
}

ServerOptimizer::ServerOptimizer(const ServerOptimizerOptions& o, size_t d)
    : options_(o), m_(d, 0.0f), v_(d, static_cast<float>(o.tau * o.tau)) {}

absl::StatusOr<ServerOptimizer> ServerOptimizer::Create(const ServerOptimizerOptions& o, size_t dimension) {
  if (!(o.learning_rate > 0.0) || !(o.tau > 0.0) || !(o.beta1 >= 0.0 && o.beta1 < 1.0) ||
      !(o.beta2 >= 0.0 && o.beta2 < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("server optimizer needs learning rate > 0 (", o.learning_rate,
                                                   "), tau > 0 (", o.tau, ") and betas in [0, 1) (", o.beta1, ", ",
                                                   o.beta2, ")"));
  }
  return ServerOptimizer(o, dimension);
}

absl::Status ServerOptimizer::Apply(std::span<float> x, std::span<const float> delta) {
  if (x.size() != m_.size() || delta.size() != m_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("server optimizer of dimension ", m_.size(), " got ", x.size(),
                                                   " parameters and ", delta.size(), " deltas"));
  }
  for (float d : delta) {
    if (!std::isfinite(d)) return absl::InvalidArgumentError("mean delta has a value that is not finite");
  }
  const auto lr = static_cast<float>(options_.learning_rate);
  const auto b1 = static_cast<float>(options_.beta1), b2 = static_cast<float>(options_.beta2);
  const auto tau = static_cast<float>(options_.tau);
  for (size_t i = 0; i < x.size(); ++i) {
    const float d = delta[i];
    switch (options_.kind) {
      case ServerOptimizerKind::kFedAvg:
        x[i] += lr * d;
        break;
      case ServerOptimizerKind::kFedAvgM:
        m_[i] = b1 * m_[i] + d;
        x[i] += lr * m_[i];
        break;
      case ServerOptimizerKind::kFedAdam:
      case ServerOptimizerKind::kFedYogi: {
        m_[i] = b1 * m_[i] + (1 - b1) * d;
        const float d2 = d * d;
        if (options_.kind == ServerOptimizerKind::kFedAdam) {
          v_[i] = b2 * v_[i] + (1 - b2) * d2;
        } else {
          const float diff = v_[i] - d2;
          v_[i] -= (1 - b2) * d2 * static_cast<float>((diff > 0) - (diff < 0));
        }
        x[i] += lr * m_[i] / (std::sqrt(v_[i]) + tau);
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ServerOptimizer::Restore(std::vector<float> m, std::vector<float> v) {
  if (m.size() != m_.size() || v.size() != v_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("restored moments have sizes ", m.size(), " and ", v.size(), ", expected ", m_.size()));
  }
  m_ = std::move(m);
  v_ = std::move(v);
  return absl::OkStatus();
}

}  // namespace tinyfed::aggregator
