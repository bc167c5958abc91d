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

namespace {

// Each value's noise is the sum of four Box-Muller normals (53-bit uniforms
// from the secure generator) halved: the same N(0, 1), with the gaps in a
// single sample's floating-point support, which an attacker can use to tell
// the noised value's origin (Jin et al. 2022), closed by the sum (Holohan
// and Braghin 2021, "Secure random sampling in differential privacy").
template <typename T>
void AddSecureGaussian(std::span<T> values, double stddev, SecureRandom& rng) {
  auto uniform = [&] { return (static_cast<double>(rng.Next64() >> 11) + 0.5) * 0x1.0p-53; };
  for (T& v : values) {
    double sum = 0.0;
    for (int pair = 0; pair < 2; ++pair) {
      const double r = std::sqrt(-2.0 * std::log(uniform()));
      const double t = 2.0 * M_PI * uniform();
      sum += r * std::cos(t) + r * std::sin(t);
    }
    v += static_cast<T>(stddev * 0.5 * sum);
  }
}

}  // namespace

void AddGaussianNoise(std::span<float> values, double stddev, SecureRandom& rng) {
  AddSecureGaussian(values, stddev, rng);
}

void AddGaussianNoise(std::span<double> values, double stddev, SecureRandom& rng) {
  AddSecureGaussian(values, stddev, rng);
}

absl::StatusOr<double> AdaptiveClippingUpdateNoise(double z, double count_noise_stddev) {
  if (!(z > 0.0) || !(count_noise_stddev > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier ", z, " and count noise ", count_noise_stddev, " must both be positive"));
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
