#include "tinyfed/dp/clipping.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tinyfed::dp {

double ClipL2(std::span<float> update, double clip) {
  double norm2 = 0.0;
  for (float v : update) norm2 += static_cast<double>(v) * v;
  const double norm = std::sqrt(norm2);
  if (norm > clip) {
    const auto f = static_cast<float>(clip / norm);
    for (float& v : update) v *= f;
  }
  return norm;
}

void AddGaussianNoise(std::span<float> values, double stddev, SecureRandom& rng) {
  // Box-Muller on 53-bit uniforms from the secure generator.
  auto uniform = [&] { return (static_cast<double>(rng.Next64() >> 11) + 0.5) * 0x1.0p-53; };
  for (size_t i = 0; i < values.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = 2.0 * M_PI * uniform();
    values[i] += static_cast<float>(stddev * r * std::cos(t));
    if (i + 1 < values.size()) values[i + 1] += static_cast<float>(stddev * r * std::sin(t));
  }
}

absl::StatusOr<double> AdaptiveClippingUpdateNoise(double z, double count_noise_stddev) {
  if (!(z > 0.0) || !(count_noise_stddev > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("noise multiplier ", z, " and count noise ", count_noise_stddev,
                                                   " must both be positive"));
  }
  const double rest = 1.0 / (z * z) - 1.0 / (4.0 * count_noise_stddev * count_noise_stddev);
  if (rest <= 0.0) {
    return absl::InvalidArgumentError(absl::StrCat("count noise ", count_noise_stddev,
                                                   " is too small for noise multiplier ", z,
                                                   ": it must exceed z / 2 = ", z / 2));
  }
  return 1.0 / std::sqrt(rest);
}

absl::StatusOr<AdaptiveClip> AdaptiveClip::Create(const Options& o) {
  if (!(o.initial_clip > 0.0) || !(o.learning_rate > 0.0) || !(o.target_quantile > 0.0 && o.target_quantile < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("adaptive clipping needs clip > 0 (", o.initial_clip,
                                                   "), learning rate > 0 (", o.learning_rate,
                                                   ") and a quantile in (0, 1) (", o.target_quantile, ")"));
  }
  return AdaptiveClip(o);
}

void AdaptiveClip::Update(double noised_indicator_sum, int clients) {
  if (clients < 1) return;
  const double fraction = noised_indicator_sum / clients;
  clip_ *= std::exp(-options_.learning_rate * (fraction - options_.target_quantile));
}

}  // namespace tinyfed::dp
