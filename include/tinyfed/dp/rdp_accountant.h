// Rényi differential privacy accounting.
//
// The Poisson-subsampled Gaussian mechanism (Mironov, Talwar, Zhang 2019):
// RDP at integer orders by the binomial expansion, at fractional orders by
// the two-sided series, composed over steps by addition. Conversion to
// (epsilon, delta) uses the improved bound of Balle et al. 2020 / Canonne,
// Kamath, Steinke 2020:
//   epsilon = rdp + log(1 - 1/a) - log(delta * a) / (a - 1),
// minimized over the orders a.
//
// All functions are pure and thread-compatible. Bad arguments get
// INVALID_ARGUMENT naming the argument and value.
#ifndef TINYFED_DP_RDP_ACCOUNTANT_H_
#define TINYFED_DP_RDP_ACCOUNTANT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::dp {

// 1.1, 1.2, ..., 10.9, then 12, 13, ..., 63.
std::vector<double> DefaultOrders();

// RDP of `steps` compositions of the sampled Gaussian with sampling rate q in
// (0, 1] and noise multiplier z > 0 (noise stddev / L2 sensitivity), at each
// order (> 1; +infinity gives +infinity).
absl::StatusOr<std::vector<double>> SampledGaussianRdp(double q, double noise_multiplier, int64_t steps,
                                                       std::span<const double> orders);

struct PrivacySpent {
  double epsilon = 0.0;
  double order = 0.0;              // the order that gave the smallest epsilon; 0 when the PLD accountant gave it
  const char* accountant = "rdp";  // or "pld" (dp/pld_accountant.h)
};

// delta in (0, 1); orders and rdp of equal length.
absl::StatusOr<PrivacySpent> EpsilonFromRdp(std::span<const double> orders, std::span<const double> rdp, double delta);

// The smallest noise multiplier (to a relative 1e-4, rounded up) whose
// epsilon after `steps` at rate q is at most target_epsilon.
absl::StatusOr<double> NoiseMultiplierForEpsilon(double q, int64_t steps, double delta, double target_epsilon,
                                                 std::span<const double> orders);

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_RDP_ACCOUNTANT_H_
