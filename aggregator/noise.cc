#include "tinyfed/aggregator/noise.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tinyfed/dp/pld_accountant.h"

namespace tinyfed::aggregator {

dp::DdgConfig FederationDdgConfig(const Config& config, size_t dimension, int expected_clients) {
  const bool patient = config.dp.unit == DpUnit::kPatient;
  dp::DdgConfig c;
  c.dimension = dimension;
  c.clip = patient ? config.dp.update_clip : config.dp.clip;
  c.bits = config.dp.bits;
  c.expected_clients = std::max(1, expected_clients);
  c.delta = config.dp.delta;
  c.max_wrap_probability = config.dp.max_wrap_probability;
  c.local_only = config.dp.mode == DpMode::kLocal;
  c.noiseless = patient;
  return c;
}

absl::StatusOr<double> ResolveNoiseMultiplier(const Config& config, size_t dimension) {
  const DpConfig& dp = config.dp;
  if (dp.mode == DpMode::kOff) return 0.0;
  if (dp.target_epsilon <= 0) return dp.noise_multiplier;
  absl::StatusOr<double> z;
  if (dp.unit == DpUnit::kPatient) {
    z = dp::PldNoiseMultiplierForEpsilon(dp.sampling_rate, config.max_rounds * PatientStepsPerRound(config), dp.delta,
                                         dp.target_epsilon);
  } else if (dp.mode == DpMode::kCentral) {
    z = dp::PldNoiseMultiplierForEpsilon(1.0, config.max_rounds, dp.delta, dp.target_epsilon);
  } else {
    dp::DdgConfig c = FederationDdgConfig(config, dimension, ExpectedNoisyClinics(config, config.cohort_size));
    c.target_epsilon = dp.target_epsilon;
    c.rounds = config.max_rounds;
    auto p = dp::ChooseDdgParams(c);
    if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat("dp.target_epsilon: ", p.status().message()));
    return p->noise_multiplier;
  }
  if (!z.ok()) return absl::InvalidArgumentError(absl::StrCat("dp.target_epsilon: ", z.status().message()));
  return *z;
}

}  // namespace tinyfed::aggregator
