#include "tinyfed/models/decision_threshold.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tinyfed::models {
namespace {

// Phi^-1(p) by bisection on erfc: the standard library has no quantile.
double NormalQuantile(double p) {
  double lo = -10.0, hi = 10.0;
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / M_SQRT2) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

double ThresholdForSensitivity(std::span<const double> positive_probabilities, double target_sensitivity) {
  if (positive_probabilities.size() < 3 || !(target_sensitivity > 0.0 && target_sensitivity < 1.0)) return 0.5;
  std::vector<double> log_odds;
  for (double p : positive_probabilities) {
    const double q = std::clamp(p, 1e-9, 1.0 - 1e-9);
    log_odds.push_back(std::log(q / (1.0 - q)));
  }
  const double n = static_cast<double>(log_odds.size());
  double mean = 0.0, var = 0.0;
  for (double l : log_odds) mean += l / n;
  for (double l : log_odds) var += (l - mean) * (l - mean) / (n - 1.0);
  const double zp = NormalQuantile(target_sensitivity), zc = NormalQuantile(0.9);
  const double a = 1.0 - zc * zc / (2.0 * (n - 1.0)), b = zp * zp - zc * zc / n;
  const double k = (zp + std::sqrt(std::max(0.0, zp * zp - a * b))) / a;
  const double cut = mean - k * std::sqrt(var);
  return std::min(0.5, 1.0 / (1.0 + std::exp(-cut)));
}

int DecideWithThreshold(std::span<const float> logits, int positive, double threshold, float* probability) {
  const float top = *std::max_element(logits.begin(), logits.end());
  double total = 0.0;
  for (float l : logits) total += std::exp(static_cast<double>(l - top));
  auto p = [&](size_t c) { return std::exp(static_cast<double>(logits[c] - top)) / total; };
  int decided = positive;
  if (p(static_cast<size_t>(positive)) < threshold) {
    decided = positive == 0 ? 1 : 0;
    for (size_t c = 0; c < logits.size(); ++c) {
      if (static_cast<int>(c) != positive && logits[c] > logits[static_cast<size_t>(decided)])
        decided = static_cast<int>(c);
    }
  }
  *probability = static_cast<float>(p(static_cast<size_t>(decided)));
  return decided;
}

}  // namespace tinyfed::models
