// Privacy loss distribution (PLD) accounting for the Poisson-subsampled
// Gaussian mechanism: tighter than RDP, and still an upper bound.
//
// A mechanism's privacy loss L = log(P(x) / Q(x)), x ~ P, for the pair of
// output distributions on neighbouring inputs, determines its whole privacy
// curve: delta(epsilon) = E[(1 - exp(epsilon - L))+] + P(L = infinity).
// Composing mechanisms adds their losses, so the composed PLD is the
// convolution of the steps' PLDs (by FFT, FFTW).
//
// Discretization never claims less than the truth. Each grid interval's mass
// is split between its two end points so that both P's and Q's mass are kept
// ("connect the dots", Doroshenko et al. 2022): the discrete pair's curve is
// the chord of the true one, which lies above it, and a pair that dominates
// every step dominates their composition. Mass beyond the truncation bounds
// goes to infinity (high losses) or up to the lowest kept point (low
// losses), and the FFT's rounding error is added to the infinity mass.
//
// Add/remove adjacency: both directions (P the subsampled mixture and Q the
// plain Gaussian, and the reverse) are composed and the larger curve counts.
//
// Pure functions, thread-compatible; bad arguments get INVALID_ARGUMENT.
#ifndef TINYFED_DP_PLD_ACCOUNTANT_H_
#define TINYFED_DP_PLD_ACCOUNTANT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::dp {

// `steps` compositions of the Gaussian with noise multiplier z (stddev /
// L2 sensitivity) on a Poisson sample of rate q in (0, 1].
struct SampledGaussianSteps {
  double sampling_rate = 1.0;
  double noise_multiplier = 0.0;
  int64_t steps = 0;
};

struct PldOptions {
  // Grid step of the privacy loss. Coarser is faster and looser, never
  // optimistic; 1e-3 is within about 0.1% of the limit for DP-SGD's epsilon.
  double discretization = 1e-3;
  // Mass dropped at each tail after every convolution.
  double tail_mass = 1e-15;
};

// One direction of a discretized PLD: mass[i] at loss (offset + i) * h.
class PrivacyLossDistribution {
 public:
  enum class Direction { kRemove, kAdd };
  static absl::StatusOr<PrivacyLossDistribution> SampledGaussian(double sampling_rate, double noise_multiplier,
                                                                 Direction direction, const PldOptions& options);

  PrivacyLossDistribution Compose(const PrivacyLossDistribution& other) const;
  PrivacyLossDistribution SelfCompose(int64_t times) const;

  // Hockey-stick divergence at epsilon; epsilon >= 0.
  double Delta(double epsilon) const;
  // The smallest epsilon >= 0 with Delta(epsilon) <= delta (to 1e-9), or
  // +infinity when the infinity mass alone exceeds delta.
  double Epsilon(double delta) const;

  double infinity_mass() const { return infinity_mass_; }
  size_t size() const { return mass_.size(); }

 private:
  PrivacyLossDistribution(double h, int64_t offset, std::vector<double> mass, double infinity_mass, double tail_mass)
      : h_(h), offset_(offset), mass_(std::move(mass)), infinity_mass_(infinity_mass), tail_mass_(tail_mass) {}
  void Truncate();

  double h_;
  int64_t offset_;
  std::vector<double> mass_;
  double infinity_mass_;
  double tail_mass_;
};

// (epsilon, delta) of the composition of `events` (in any order), under
// add/remove adjacency. Identical events are composed by repeated squaring.
absl::StatusOr<double> PldEpsilon(std::span<const SampledGaussianSteps> events, double delta,
                                  const PldOptions& options = {});
absl::StatusOr<double> PldDelta(std::span<const SampledGaussianSteps> events, double epsilon,
                                const PldOptions& options = {});

// The smallest noise multiplier (to a relative 1e-3, rounded up) whose PLD
// epsilon after `steps` at rate q is at most target_epsilon.
absl::StatusOr<double> PldNoiseMultiplierForEpsilon(double sampling_rate, int64_t steps, double delta,
                                                    double target_epsilon, const PldOptions& options = {});

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_PLD_ACCOUNTANT_H_
