#include "aggregator/internal/drift_detector.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"

namespace tinyfed::aggregator::internal {
namespace {

void AddCounts(std::vector<uint64_t>& into, const std::vector<uint64_t>& from) {
  into.resize(std::max(into.size(), from.size()), 0);
  for (size_t i = 0; i < from.size(); ++i) into[i] += from[i];
}

uint64_t Total(const std::vector<uint64_t>& counts) {
  return std::accumulate(counts.begin(), counts.end(), uint64_t{0});
}

// Upper tail of the standard normal.
double NormalTail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

struct Moments {
  double mean = 0.0, variance = 0.0, n = 0.0;
};

// Of the bin centres, weighted by the counts.
Moments BinnedMoments(const std::vector<uint64_t>& bins) {
  Moments m;
  const double width = 1.0 / static_cast<double>(bins.size());
  for (size_t i = 0; i < bins.size(); ++i) {
    m.n += static_cast<double>(bins[i]);
    m.mean += static_cast<double>(bins[i]) * (static_cast<double>(i) + 0.5) * width;
  }
  if (m.n == 0) return m;
  m.mean /= m.n;
  for (size_t i = 0; i < bins.size(); ++i) {
    const double d = (static_cast<double>(i) + 0.5) * width - m.mean;
    m.variance += static_cast<double>(bins[i]) * d * d;
  }
  // The binning's own variance (width^2 / 12) keeps a reference that fell
  // in one bin from making every difference significant.
  m.variance = m.variance / m.n + width * width / 12.0;
  return m;
}

}  // namespace

void DriftWindow::Add(const DriftWindow& other) {
  AddCounts(confidence, other.confidence);
  AddCounts(classes, other.classes);
  holdout_samples += other.holdout_samples;
  holdout_correct += other.holdout_correct;
}

uint64_t DriftWindow::cases() const { return Total(confidence); }

double ChiSquareTail(double x, int dof) {
  if (dof <= 0) return 1.0;
  if (x <= 0) return 1.0;
  const double k = dof;
  const double z = (std::cbrt(x / k) - (1.0 - 2.0 / (9.0 * k))) / std::sqrt(2.0 / (9.0 * k));
  return NormalTail(z);
}

std::optional<std::string> DriftDetector::Suspect(const DriftWindow& window) const {
  DriftWindow reference;
  for (const DriftWindow& w : reference_) reference.Add(w);
  const DriftSettings& s = settings_;
  if (window.cases() >= s.min_cases && reference.cases() >= s.min_cases) {
    const Moments now = BinnedMoments(window.confidence), before = BinnedMoments(reference.confidence);
    const double drop = before.mean - now.mean;
    const double z = drop / std::sqrt(before.variance / before.n + now.variance / now.n);
    if (drop >= s.min_confidence_drop && NormalTail(z) < s.max_p_value) {
      return absl::StrFormat("mean confidence %.2f -> %.2f on %d cases (p %.1e)", before.mean, now.mean,
                             static_cast<int64_t>(now.n), NormalTail(z));
    }
    const uint64_t n_now = Total(window.classes), n_before = Total(reference.classes);
    const size_t k = std::max(window.classes.size(), reference.classes.size());
    if (n_now >= s.min_cases && n_before >= s.min_cases && k > 1) {
      double chi2 = 0.0, tv = 0.0;
      for (size_t c = 0; c < k; ++c) {
        const double observed = c < window.classes.size() ? static_cast<double>(window.classes[c]) : 0.0;
        const double before_c = c < reference.classes.size() ? static_cast<double>(reference.classes[c]) : 0.0;
        // Add-half smoothing: a class the reference never saw is rare, not impossible.
        const double p = (before_c + 0.5) / (static_cast<double>(n_before) + 0.5 * static_cast<double>(k));
        const double expected = p * static_cast<double>(n_now);
        chi2 += (observed - expected) * (observed - expected) / expected;
        tv += std::abs(observed / static_cast<double>(n_now) - before_c / static_cast<double>(n_before));
      }
      tv /= 2.0;
      const double p_value = ChiSquareTail(chi2, static_cast<int>(k) - 1);
      if (tv >= s.min_class_shift && p_value < s.max_p_value) {
        return absl::StrFormat("predicted classes moved by %.2f (total variation) on %d cases (p %.1e)", tv,
                               static_cast<int64_t>(n_now), p_value);
      }
    }
  }
  // Against the latest reference report with a held-out slice: slices
  // overlap from report to report, so pooling them would overstate what is
  // known.
  const auto last_slice = std::find_if(reference_.rbegin(), reference_.rend(),
                                       [&](const DriftWindow& w) { return w.holdout_samples >= s.min_cases; });
  if (window.holdout_samples >= s.min_cases && last_slice != reference_.rend()) {
    const DriftWindow& last = *last_slice;
    {
      const double a = static_cast<double>(last.holdout_correct) / static_cast<double>(last.holdout_samples);
      const double b = static_cast<double>(window.holdout_correct) / static_cast<double>(window.holdout_samples);
      const double pooled = static_cast<double>(last.holdout_correct + window.holdout_correct) /
                            static_cast<double>(last.holdout_samples + window.holdout_samples);
      const double se =
          std::sqrt(std::max(pooled * (1.0 - pooled), 1e-12) * (1.0 / static_cast<double>(last.holdout_samples) +
                                                                1.0 / static_cast<double>(window.holdout_samples)));
      const double p_value = NormalTail((a - b) / se);
      if (a - b >= s.min_accuracy_drop && p_value < s.max_p_value) {
        return absl::StrFormat("held-out accuracy %.1f%% -> %.1f%% on %d samples (p %.1e)", 100 * a, 100 * b,
                               static_cast<int64_t>(window.holdout_samples), p_value);
      }
    }
  }
  return std::nullopt;
}

DriftDetector::Change DriftDetector::Observe(const DriftWindow& window) {
  Change change;
  if (std::optional<std::string> why = Suspect(window)) {
    change.reason = *std::move(why);
    if (++suspect_in_a_row_ >= settings_.consecutive) flagged_ = true;
  } else {
    suspect_in_a_row_ = 0;
    flagged_ = false;
    reference_.push_back(window);
    while (reference_.size() > static_cast<size_t>(settings_.reference_windows)) reference_.pop_front();
  }
  change.flagged = flagged_;
  return change;
}

}  // namespace tinyfed::aggregator::internal
