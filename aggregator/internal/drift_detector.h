// Drift of what a gateway (or the whole fleet) sees, from aggregate
// telemetry only: the cases its global head answered lately (a confidence
// histogram and how often each class was chosen) and its held-out accuracy.
// Each window (one report of a device; the fleet's reports between two
// rounds) is compared with a reference pooled from the last few windows
// that were not suspect:
//   confidence  the mean confidence fell (a one-sided z test on the binned
//               means) by at least min_confidence_drop
//   classes     the predicted class frequencies moved (a chi-square test
//               against the reference's) by a total variation of at least
//               min_class_shift
//   accuracy    the held-out accuracy fell (two proportions) by at least
//               min_accuracy_drop
// A test needs both: a p-value below max_p_value and the effect size, so
// that a large fleet does not flag a harmless change. A window that fails
// any test is suspect and kept out of the reference; `consecutive` suspect
// windows in a row raise the flag, and the first window that passes again
// clears it. The models changing between windows move these statistics a
// little; a shift of the inputs moves them at once.
#ifndef TINYFED_AGGREGATOR_INTERNAL_DRIFT_DETECTOR_H_
#define TINYFED_AGGREGATOR_INTERNAL_DRIFT_DETECTOR_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace tinyfed::aggregator::internal {

struct DriftWindow {
  std::vector<uint64_t> confidence;  // 10 bins over [0, 1]
  std::vector<uint64_t> classes;     // cases per predicted class
  uint64_t holdout_samples = 0;
  uint64_t holdout_correct = 0;
  // Adds `other`'s counts (the fleet pools its devices' windows).
  void Add(const DriftWindow& other);
  uint64_t cases() const;
};

struct DriftSettings {
  int reference_windows = 5;
  int consecutive = 2;
  uint64_t min_cases = 20;  // fewer cases in the window or the reference: no test
  double max_p_value = 1e-4;
  double min_confidence_drop = 0.05;
  double min_class_shift = 0.15;
  double min_accuracy_drop = 0.05;
};

class DriftDetector {
 public:
  explicit DriftDetector(DriftSettings settings = {}) : settings_(settings) {}

  struct Change {
    bool flagged = false;  // the flag now
    std::string reason;    // why the window is suspect, if it is
  };
  // Takes the next window; the flag changed if flagged() differs from before.
  Change Observe(const DriftWindow& window);
  bool flagged() const { return flagged_; }

 private:
  // Why `window` differs from the reference, or nothing.
  std::optional<std::string> Suspect(const DriftWindow& window) const;

  DriftSettings settings_;
  std::deque<DriftWindow> reference_;
  int suspect_in_a_row_ = 0;
  bool flagged_ = false;
};

// P(X >= x) for a chi-square variable with `dof` degrees of freedom
// (Wilson-Hilferty; a few percent off in the far tail, which the flag's
// min effect sizes make moot).
double ChiSquareTail(double x, int dof);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_DRIFT_DETECTOR_H_
