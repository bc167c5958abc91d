#include "tinyfed/dp/discrete_gaussian.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tinyfed::dp {
namespace {

constexpr uint64_t kDenominator = uint64_t{1} << 16;
constexpr uint64_t kMaxNumerator = uint64_t{1} << 48;

uint64_t IntegerSqrt(uint64_t n) {
  auto r = static_cast<uint64_t>(std::sqrt(static_cast<double>(n)));
  while (r * r > n) --r;
  while ((r + 1) * (r + 1) <= n) ++r;
  return r;
}

}  // namespace

absl::StatusOr<Rational> SigmaSquaredAsRational(double sigma_squared) {
  if (!(sigma_squared > 0.0) || sigma_squared > 4294967296.0) {
    return absl::InvalidArgumentError(absl::StrCat("sigma^2 must be in (0, 2^32], got ", sigma_squared));
  }
  const auto n = static_cast<uint64_t>(std::llround(sigma_squared * static_cast<double>(kDenominator)));
  return Rational{std::max<uint64_t>(n, 1), kDenominator};
}

bool BernoulliExp(SecureRandom& rng, uint128 numerator, uint128 denominator) {
  if (numerator > denominator) {
    // exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))).
    const uint128 whole = numerator / denominator;
    for (uint128 i = 0; i < whole; ++i) {
      if (!BernoulliExp(rng, 1, 1)) return false;
    }
    numerator -= whole * denominator;
  }
  // gamma in [0, 1]: K = first k with Bernoulli(gamma / k) false; accept iff K is odd.
  uint128 k = 1;
  while (rng.Bernoulli(numerator, denominator * k)) {
    ++k;
    if (k > (uint128(1) << 28)) break;  // probability below 1 / (2^28)!
  }
  return k % 2 == 1;
}

int64_t SampleDiscreteLaplace(SecureRandom& rng, uint64_t t) {
  for (;;) {
    const uint64_t u = rng.Uniform(t);
    if (!BernoulliExp(rng, u, t)) continue;
    uint64_t v = 0;
    while (BernoulliExp(rng, 1, 1)) ++v;
    const uint64_t x = u + t * v;
    const bool negative = rng.Bernoulli(1, 2);
    if (negative && x == 0) continue;
    return negative ? -static_cast<int64_t>(x) : static_cast<int64_t>(x);
  }
}

absl::StatusOr<DiscreteGaussianSampler> DiscreteGaussianSampler::Create(Rational s) {
  if (s.numerator == 0 || s.denominator == 0 || s.numerator > kMaxNumerator || s.denominator > kDenominator) {
    return absl::InvalidArgumentError(absl::StrCat("sigma^2 = ", s.numerator, "/", s.denominator,
                                                   " outside the supported range (0, 2^48/1], denominator <= 2^16"));
  }
  const uint64_t t = IntegerSqrt(s.numerator / s.denominator) + 1;  // floor(sqrt(x)) = isqrt(floor(x))
  return DiscreteGaussianSampler(s, t);
}

int64_t DiscreteGaussianSampler::Sample(SecureRandom& rng) const {
  const uint64_t p = sigma_squared_.numerator, q = sigma_squared_.denominator;
  // Accept Y with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))
  //   = exp(-(|Y| q t - p)^2 / (2 p q t^2)).
  const uint128 den = uint128(2) * p * q * t_ * t_;
  for (;;) {
    const int64_t y = SampleDiscreteLaplace(rng, t_);
    const uint128 abs_y = static_cast<uint64_t>(y < 0 ? -y : y);
    const uint128 a = abs_y * q * t_;
    const uint128 diff = a > p ? a - p : p - a;
    if (diff >> 63) continue;  // exponent above 2^27: see the header
    if (BernoulliExp(rng, diff * diff, den)) return y;
  }
}

}  // namespace tinyfed::dp
