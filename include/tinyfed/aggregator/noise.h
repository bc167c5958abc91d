// The noise multiplier a federation runs with: the configured one, or the
// smallest that keeps max_rounds rounds within dp.target_epsilon, by the
// accountant that applies (PLD for patient-level DP-SGD, whose worst case
// is a clinic in every round; RDP for the distributed discrete Gaussian and
// central noise). The aggregator resolves it once at start; `tinyfed privacy
// plan` shows it before a run.
#ifndef TINYFED_AGGREGATOR_NOISE_H_
#define TINYFED_AGGREGATOR_NOISE_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/dp/ddg.h"

namespace tinyfed::aggregator {

// The distributed-DP encoding a round of `expected_clients` survivors uses,
// before its noise is chosen: for the patient unit a noiseless one clipped
// at dp.update_clip (the clinics' DP-SGD carries the noise).
dp::DdgConfig FederationDdgConfig(const Config& config, size_t dimension, int expected_clients);

// `dimension`: the head's parameter count. 0 for dp.mode = off.
// INVALID_ARGUMENT naming dp.target_epsilon when no multiplier reaches it.
absl::StatusOr<double> ResolveNoiseMultiplier(const Config& config, size_t dimension);

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_NOISE_H_
