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
  AddCounts(holdout_confidence, other.holdout_confidence);
  AddCounts(holdout_classes, other.holdout_classes);
  holdout_samples += other.holdout_samples;
  holdout_correct += other.holdout_correct;
  // A pool spans models: it names the latest, so that the accuracy test
  // compares pools only when no model came between them.
  model_version = std::max(model_version, other.model_version);
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
  const DriftSettings& s = settings_;
  const uint64_t n_now = Total(window.confidence), n_before = Total(window.holdout_confidence);
  if (n_now >= s.min_cases && n_before >= s.min_cases) {
    const Moments now = BinnedMoments(window.confidence), before = BinnedMoments(window.holdout_confidence);
    const double drop = before.mean - now.mean;
    const double z = drop / std::sqrt(before.variance / before.n + now.variance / now.n);
    if (drop >= s.min_confidence_drop && NormalTail(z) < s.max_p_value) {
      return absl::StrFormat("mean confidence %.2f on %d recent cases against %.2f held out (p %.1e)", now.mean,
                             static_cast<int64_t>(now.n), before.mean, NormalTail(z));
    }
  }
  const uint64_t c_now = Total(window.classes), c_before = Total(window.holdout_classes);
  const size_t k = std::max(window.classes.size(), window.holdout_classes.size());
  if (c_now >= s.min_cases && c_before >= s.min_cases && k > 1) {
    // A test of homogeneity (both are samples), over the classes either shows.
    double chi2 = 0.0, tv = 0.0;
    int shown = 0;
    const double n1 = static_cast<double>(c_now), n2 = static_cast<double>(c_before);
    for (size_t c = 0; c < k; ++c) {
      const double a = c < window.classes.size() ? static_cast<double>(window.classes[c]) : 0.0;
      const double b = c < window.holdout_classes.size() ? static_cast<double>(window.holdout_classes[c]) : 0.0;
      if (a + b == 0) continue;
      ++shown;
      const double expected_a = (a + b) * n1 / (n1 + n2), expected_b = (a + b) * n2 / (n1 + n2);
      chi2 += (a - expected_a) * (a - expected_a) / expected_a + (b - expected_b) * (b - expected_b) / expected_b;
      tv += std::abs(a / n1 - b / n2);
    }
    tv /= 2.0;
    const double p_value = ChiSquareTail(chi2, shown - 1);
    if (tv >= s.min_class_shift && p_value < s.max_p_value) {
      return absl::StrFormat(
          "predicted classes of %d recent cases differ from the held-out slice's by %.2f (total "
          "variation, p %.1e)",
          static_cast<int64_t>(c_now), tv, p_value);
    }
  }
  // Held-out slices overlap from report to report: against the last good
  // window alone, not a pool, so as not to overstate what is known.
  if (last_good_ && last_good_->model_version == window.model_version && window.holdout_samples >= s.min_cases &&
      last_good_->holdout_samples >= s.min_cases) {
    const DriftWindow& last = *last_good_;
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
  return std::nullopt;
}

DriftDetector::Change DriftDetector::Observe(const DriftWindow& window) {
  Change change;
  // Only a window with recent cases can show the inputs are back to normal;
  // one with too few (a report right after a round) changes nothing unless
  // its held-out accuracy fell.
  const bool has_cases =
      window.cases() >= settings_.min_cases && Total(window.holdout_confidence) >= settings_.min_cases;
  if (std::optional<std::string> why = Suspect(window)) {
    change.reason = *std::move(why);
    if (++suspect_in_a_row_ >= settings_.consecutive) flagged_ = true;
  } else if (!has_cases) {
    if (window.holdout_samples > 0 && !flagged_) last_good_ = window;
  } else {
    suspect_in_a_row_ = 0;
    flagged_ = false;
    if (window.holdout_samples > 0) last_good_ = window;
  }
  change.flagged = flagged_;
  return change;
}

}  // namespace tinyfed::aggregator::internal
