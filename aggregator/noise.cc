#include "tinyfed/aggregator/noise.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/pld_accountant.h"

namespace tinyfed::aggregator {

dp::DdgConfig FederationDdgConfig(const Config& config, size_t dimension, int expected_clients) {
  const bool patient = config.dp.unit == DpUnit::kPatient;
  dp::DdgConfig c;
  c.dimension = dimension;
  if (config.dp.sketch_fraction > 0) {
    const double m = std::ceil(config.dp.sketch_fraction * static_cast<double>(dimension));
    c.sketch_dimension = std::clamp<size_t>(static_cast<size_t>(m), 1, dimension);
  }
  c.clip = patient ? config.dp.update_clip : config.dp.clip;
  c.bits = config.dp.bits;
  c.expected_clients = std::max(1, expected_clients);
  c.delta = config.dp.delta;
  c.max_wrap_probability = config.dp.max_wrap_probability;
  c.local_only = config.dp.mode == DpMode::kLocal;
  c.noiseless = patient;
  return c;
}

namespace {

absl::StatusOr<double> NoiseMultiplierOutsideSecAgg(const Config& config) {
  const DpConfig& dp = config.dp;
  if (dp.mode == DpMode::kOff) return 0.0;
  if (dp.target_epsilon <= 0) return dp.noise_multiplier;
  auto z = dp.unit == DpUnit::kPatient
               ? dp::PldNoiseMultiplierForEpsilon(dp.sampling_rate, config.max_rounds * PatientStepsPerRound(config),
                                                  dp.delta, dp.target_epsilon)
               : dp::PldNoiseMultiplierForEpsilon(1.0, config.max_rounds, dp.delta, dp.target_epsilon);
  if (!z.ok()) return absl::InvalidArgumentError(absl::StrCat("dp.target_epsilon: ", z.status().message()));
  return *z;
}

}  // namespace

absl::StatusOr<Encoding> ResolveEncoding(const Config& config, size_t dimension) {
  const DpConfig& dp = config.dp;
  const bool clinic_noise_in_encoding = dp.unit != DpUnit::kPatient && config.secure_aggregation;
  Encoding e;
  if (!clinic_noise_in_encoding) {
    TINYFED_ASSIGN_OR_RETURN(e.noise_multiplier, NoiseMultiplierOutsideSecAgg(config));
  }
  if (!config.secure_aggregation) return e;
  // The encoding's own noise (clinic unit) is found with its bits; the
  // patient unit's encoding carries none.
  dp::DdgConfig c = FederationDdgConfig(config, dimension, ExpectedNoisyClinics(config, config.cohort_size));
  if (clinic_noise_in_encoding) {
    if (dp.target_epsilon > 0) {
      c.target_epsilon = dp.target_epsilon;
      c.rounds = config.max_rounds;
    } else {
      c.noise_multiplier = dp.noise_multiplier;
    }
  }
  auto p = dp::ChooseDdgParams(c);
  if (!p.ok()) {
    const char* setting = clinic_noise_in_encoding && dp.target_epsilon > 0 ? "dp.target_epsilon" : "dp.bits";
    return absl::InvalidArgumentError(absl::StrCat(setting, ": ", p.status().message()));
  }
  if (clinic_noise_in_encoding) e.noise_multiplier = p->noise_multiplier;
  e.bits = p->config.bits;
  return e;
}

}  // namespace tinyfed::aggregator
