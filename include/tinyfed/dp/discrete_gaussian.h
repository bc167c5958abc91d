// Exact sampling from the discrete Gaussian N_Z(0, sigma^2), after Canonne,
// Kamath and Steinke 2020 ("The Discrete Gaussian for Differential Privacy"),
// Algorithms 1-3: Bernoulli(exp(-gamma)) for rational gamma, the discrete
// Laplace, and rejection from it. The sampling loop uses integer arithmetic
// only; sigma^2 is the rational p / q, so the distribution sampled is exactly
// the one the accountant is told about.
//
// Exactness caveat: a candidate whose rejection exponent exceeds 2^27 is
// rejected outright instead of with probability 1 - exp(-2^27) (a difference
// far below any double's resolution).
#ifndef TINYFED_DP_DISCRETE_GAUSSIAN_H_
#define TINYFED_DP_DISCRETE_GAUSSIAN_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "tinyfed/dp/secure_random.h"

namespace tinyfed::dp {

struct Rational {
  uint64_t numerator = 0;
  uint64_t denominator = 1;
  double value() const { return static_cast<double>(numerator) / static_cast<double>(denominator); }
};

// sigma^2 in lowest-common form with denominator 2^16; INVALID_ARGUMENT unless
// 0 < sigma^2 <= 2^32.
absl::StatusOr<Rational> SigmaSquaredAsRational(double sigma_squared);

// Bernoulli(exp(-gamma)) for gamma = numerator / denominator >= 0.
bool BernoulliExp(SecureRandom& rng, uint128 numerator, uint128 denominator);

// Discrete Laplace with scale t >= 1: P(x) proportional to exp(-|x| / t).
int64_t SampleDiscreteLaplace(SecureRandom& rng, uint64_t t);

class DiscreteGaussianSampler {
 public:
  // INVALID_ARGUMENT for sigma^2 = 0 or a numerator above 2^48 or
  // denominator above 2^16 (the bounds that keep the arithmetic in 128 bits).
  static absl::StatusOr<DiscreteGaussianSampler> Create(Rational sigma_squared);
  int64_t Sample(SecureRandom& rng) const;
  Rational sigma_squared() const { return sigma_squared_; }

 private:
  DiscreteGaussianSampler(Rational s, uint64_t t) : sigma_squared_(s), t_(t) {}
  Rational sigma_squared_;
  uint64_t t_;  // floor(sigma) + 1
};

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_DISCRETE_GAUSSIAN_H_
