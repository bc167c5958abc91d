// The noise multiplier and the bits a federation runs with. The noise: the
// configured multiplier, or the smallest that keeps max_rounds rounds within
// dp.target_epsilon, by the accountant that applies (PLD for patient-level
// DP-SGD, whose worst case is a clinic in every round; RDP for the
// distributed discrete Gaussian and central noise). The bits of SecAgg+
// rounds: dp.bits, or with dp.bits = 0 the fewest whose rounding costs little
// (dp::ChooseDdgParams), found together with the noise since each bounds the
// other. The aggregator resolves both once at start; `tinyfed privacy plan`
// shows them before a run.
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

struct Encoding {
  double noise_multiplier = 0.0;  // 0 for dp.mode = off
  int bits = 0;                   // 0 without SecAgg+
};

// `dimension`: the head's parameter count. INVALID_ARGUMENT naming
// dp.target_epsilon when no multiplier reaches it, or dp.bits when no width fits.
absl::StatusOr<Encoding> ResolveEncoding(const Config& config, size_t dimension);

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_NOISE_H_
