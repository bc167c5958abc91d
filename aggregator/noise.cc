#include "tinyfed/aggregator/noise.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/pld_accountant.h"

namespace tinyfed::aggregator {

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
    dp::DdgConfig c;
    c.dimension = dimension;
    c.clip = dp.clip;
    c.bits = dp.bits;
    c.expected_clients = std::max(1, static_cast<int>(config.cohort_size * (1.0 - config.max_dropout)));
    c.delta = dp.delta;
    c.target_epsilon = dp.target_epsilon;
    c.rounds = config.max_rounds;
    c.max_wrap_probability = dp.max_wrap_probability;
    c.local_only = dp.mode == DpMode::kLocal;
    auto p = dp::ChooseDdgParams(c);
    if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat("dp.target_epsilon: ", p.status().message()));
    return p->noise_multiplier;
  }
  if (!z.ok()) return absl::InvalidArgumentError(absl::StrCat("dp.target_epsilon: ", z.status().message()));
  return *z;
}

}  // namespace tinyfed::aggregator
