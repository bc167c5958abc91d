#include "tinyfed/dp/rdp_accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tinyfed::dp {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b))
double LogAdd(double a, double b) {
  const double hi = std::max(a, b), lo = std::min(a, b);
  if (hi == -kInf) return -kInf;
  return hi + std::log1p(std::exp(lo - hi));
}

// log(exp(a) - exp(b)) for a >= b; -inf when equal.
double LogSub(double a, double b) {
  if (b == -kInf) return a;
  if (a <= b) return -kInf;  // the series never needs a negative result
  return a + std::log1p(-std::exp(b - a));
}

// log(erfc(x)), accurate where erfc underflows (large x).
double LogErfc(double x) {
  if (x < 20.0) return std::log(std::erfc(x));
  // Asymptotic expansion: erfc(x) ~ exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6)).
  const double r = 1.0 / (x * x);
  return -x * x - std::log(x) - 0.5 * std::log(M_PI) + std::log1p(-0.5 * r + 0.75 * r * r - 1.875 * r * r * r);
}

// log(A_alpha) for integer alpha.
double LogAInteger(double q, double sigma, int alpha) {
  double log_a = -kInf;
  for (int i = 0; i <= alpha; ++i) {
    const double log_coef = std::lgamma(alpha + 1.0) - std::lgamma(i + 1.0) - std::lgamma(alpha - i + 1.0);
    const double s = log_coef + i * std::log(q) + (alpha - i) * std::log1p(-q) +
                     (static_cast<double>(i) * i - i) / (2.0 * sigma * sigma);
    log_a = LogAdd(log_a, s);
  }
  return log_a;
}

// log(A_alpha) for fractional alpha: the two-sided series of Mironov et al.
double LogAFractional(double q, double sigma, double alpha) {
  double log_a0 = -kInf, log_a1 = -kInf;
  const double z0 = sigma * sigma * std::log(1.0 / q - 1.0) + 0.5;
  // Binomial coefficient C(alpha, i) as sign and log magnitude, by recurrence.
  double log_coef = 0.0;
  bool positive = true;
  for (int i = 0;; ++i) {
    if (i > 0) {
      const double factor = (alpha - i + 1.0) / i;
      if (factor < 0) positive = !positive;
      log_coef += std::log(std::fabs(factor));
    }
    const double j = alpha - i;
    const double log_t0 = log_coef + i * std::log(q) + j * std::log1p(-q);
    const double log_t1 = log_coef + j * std::log(q) + i * std::log1p(-q);
    const double log_e0 = std::log(0.5) + LogErfc((i - z0) / (std::sqrt(2.0) * sigma));
    const double log_e1 = std::log(0.5) + LogErfc((z0 - j) / (std::sqrt(2.0) * sigma));
    const double log_s0 = log_t0 + (static_cast<double>(i) * i - i) / (2.0 * sigma * sigma) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
    if (positive) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30.0 || i > 100000) break;
  }
  return LogAdd(log_a0, log_a1);
}

double RdpOneStep(double q, double sigma, double alpha) {
  if (alpha == kInf) return kInf;
  if (q == 1.0) return alpha / (2.0 * sigma * sigma);
  const double log_a =
      alpha == std::floor(alpha) ? LogAInteger(q, sigma, static_cast<int>(alpha)) : LogAFractional(q, sigma, alpha);
  return log_a / (alpha - 1.0);
}

absl::Status CheckDelta(double delta) {
  if (!(delta > 0.0 && delta < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  return absl::OkStatus();
}

absl::Status CheckRate(double q) {
  if (!(q > 0.0 && q <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling rate must be in (0, 1], got ", q));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<double> DefaultOrders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1.0 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  return orders;
}

absl::StatusOr<std::vector<double>> SampledGaussianRdp(double q, double noise_multiplier, int64_t steps,
                                                       std::span<const double> orders) {
  if (auto s = CheckRate(q); !s.ok()) return s;
  if (!(noise_multiplier > 0.0) || !std::isfinite(noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier must be positive and finite, got ", noise_multiplier));
  }
  if (steps < 0) return absl::InvalidArgumentError(absl::StrCat("steps must be >= 0, got ", steps));
  std::vector<double> rdp;
  rdp.reserve(orders.size());
  for (double a : orders) {
    if (!(a > 1.0)) return absl::InvalidArgumentError(absl::StrCat("RDP orders must be > 1, got ", a));
    rdp.push_back(RdpOneStep(q, noise_multiplier, a) * static_cast<double>(steps));
  }
  return rdp;
}

absl::StatusOr<PrivacySpent> EpsilonFromRdp(std::span<const double> orders, std::span<const double> rdp, double delta) {
  if (auto s = CheckDelta(delta); !s.ok()) return s;
  if (orders.size() != rdp.size() || orders.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(orders.size(), " orders for ", rdp.size(), " RDP values"));
  }
  PrivacySpent best{kInf, orders[0]};
  for (size_t k = 0; k < orders.size(); ++k) {
    const double a = orders[k], r = rdp[k];
    if (a < 1.0 || r < 0.0 || std::isnan(r)) {
      return absl::InvalidArgumentError(absl::StrCat("order ", a, " has RDP ", r));
    }
    double eps = kInf;
    if (delta * delta + std::expm1(-r) > 0.0) {
      eps = 0.0;            // KL divergence alone bounds delta
    } else if (a > 1.01) {  // the bound is numerically unstable as a -> 1
      eps = r + std::log1p(-1.0 / a) - std::log(delta * a) / (a - 1.0);
    }
    if (eps < best.epsilon) best = {eps, a};
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

absl::StatusOr<double> NoiseMultiplierForEpsilon(double q, int64_t steps, double delta, double target_epsilon,
                                                 std::span<const double> orders) {
  if (auto s = CheckRate(q); !s.ok()) return s;
  if (auto s = CheckDelta(delta); !s.ok()) return s;
  if (!(target_epsilon > 0.0) || !std::isfinite(target_epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat("target epsilon must be positive, got ", target_epsilon));
  }
  auto epsilon = [&](double z) -> absl::StatusOr<double> {
    auto rdp = SampledGaussianRdp(q, z, steps, orders);
    if (!rdp.ok()) return rdp.status();
    auto spent = EpsilonFromRdp(orders, *rdp, delta);
    if (!spent.ok()) return spent.status();
    return spent->epsilon;
  };
  double lo = 0.0, hi = 1.0;
  for (;;) {
    auto e = epsilon(hi);
    if (!e.ok()) return e.status();
    if (*e <= target_epsilon) break;
    lo = hi;
    hi *= 2.0;
    if (hi > 1e6) {
      return absl::InvalidArgumentError(absl::StrCat("no noise multiplier up to 1e6 reaches epsilon ", target_epsilon));
    }
  }
  while (hi - lo > 1e-4 * hi) {
    const double mid = 0.5 * (lo + hi);
    auto e = epsilon(mid);
    if (!e.ok()) return e.status();
    (*e <= target_epsilon ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace tinyfed::dp
