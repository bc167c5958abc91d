// Server optimizers: how the aggregator turns the round's mean client delta
// (local model - global model) into the next global model. As in Reddi et
// al. 2021, "Adaptive Federated Optimization", Algorithm 2:
//   FedAvg   x <- x + lr * delta
//   FedAvgM  m <- b1 m + delta;                       x <- x + lr * m
//   FedAdam  m <- b1 m + (1 - b1) delta;  v <- b2 v + (1 - b2) delta^2;
//            x <- x + lr * m / (sqrt(v) + tau)
//   FedYogi  as FedAdam with v <- v - (1 - b2) delta^2 sign(v - delta^2)
// v starts at tau^2, as the paper assumes (v_{-1} >= tau^2). No bias
// correction, as in the paper. State (m, v) is exposed so the aggregator can
// persist it and resume after a restart. Not thread-safe.
#ifndef TINYFED_AGGREGATOR_SERVER_OPTIMIZER_H_
#define TINYFED_AGGREGATOR_SERVER_OPTIMIZER_H_

#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::aggregator {

enum class ServerOptimizerKind { kFedAvg, kFedAvgM, kFedAdam, kFedYogi };

absl::StatusOr<ServerOptimizerKind> ParseServerOptimizer(std::string_view name);  // fedavg, fedavgm, fedadam, fedyogi

struct ServerOptimizerOptions {
  ServerOptimizerKind kind = ServerOptimizerKind::kFedAvg;
  double learning_rate = 1.0;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double tau = 1e-3;  // adaptivity
};

class ServerOptimizer {
 public:
  // INVALID_ARGUMENT for a non-positive learning rate or tau, or betas
  // outside [0, 1).
  static absl::StatusOr<ServerOptimizer> Create(const ServerOptimizerOptions& options, size_t dimension);

  // params += update(mean_delta). INVALID_ARGUMENT for sizes other than the
  // dimension, or a non-finite delta (params untouched).
  absl::Status Apply(std::span<float> params, std::span<const float> mean_delta);

  const std::vector<float>& first_moment() const { return m_; }
  const std::vector<float>& second_moment() const { return v_; }
  // Restores persisted moments (sizes must match).
  absl::Status Restore(std::vector<float> first_moment, std::vector<float> second_moment);

 private:
  ServerOptimizer(const ServerOptimizerOptions& o, size_t d);
  ServerOptimizerOptions options_;
  std::vector<float> m_, v_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_SERVER_OPTIMIZER_H_
