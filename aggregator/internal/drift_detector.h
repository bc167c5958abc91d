// Drift of what a gateway (or the whole fleet) sees, from aggregate
// telemetry only. Each window (one report of a device; the fleet's reports
// between two rounds, pooled) holds the cases the global head answered
// lately and, under the same model, the gateway's held-out slice:
//   confidence  the recent cases' mean confidence is lower than the
//               held-out slice's (a one-sided z test on the binned means)
//               by at least min_confidence_drop
//   classes     the recent cases' predicted classes differ from the
//               held-out slice's (a chi-square test of homogeneity) by a
//               total variation of at least min_class_shift
//   accuracy    under the same model as the last window that was not
//               suspect, the held-out accuracy fell (two proportions) by
//               at least min_accuracy_drop: newly labelled samples the
//               model does worse on (a drop that comes with a new model is
//               the canary's to judge, config.h RolloutConfig)
// Comparing recent cases with the clinic's own stored samples under one
// model keeps each round's new model from looking like drift; what moves
// is the inputs. A test needs both a p-value below max_p_value and the
// effect size, so that a large fleet does not flag a harmless change. A
// window that fails any test is suspect; `consecutive` suspect windows in
// a row raise the flag, and the first window that passes clears it. A
// window too small for any test changes nothing.
#ifndef TINYFED_AGGREGATOR_INTERNAL_DRIFT_DETECTOR_H_
#define TINYFED_AGGREGATOR_INTERNAL_DRIFT_DETECTOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tinyfed::aggregator::internal {

struct DriftWindow {
  std::vector<uint64_t> confidence;                           // recent cases: 10 bins over [0, 1]
  std::vector<uint64_t> classes;                              // recent cases per predicted class
  std::vector<uint64_t> holdout_confidence, holdout_classes;  // the held-out slice, the same way
  uint64_t holdout_samples = 0;
  uint64_t holdout_correct = 0;
  uint64_t model_version = 0;  // the accuracy test compares one model's windows (a pool's: its latest)
  // Adds `other`'s counts (the fleet pools its devices' windows).
  void Add(const DriftWindow& other);
  uint64_t cases() const;
};

struct DriftSettings {
  int consecutive = 2;
  uint64_t min_cases = 20;  // fewer cases in the window or the reference: no test
  double max_p_value = 1e-4;
  double min_confidence_drop = 0.05;
  double min_class_shift = 0.3;
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
  // Why `window` looks drifted, or nothing.
  std::optional<std::string> Suspect(const DriftWindow& window) const;

  DriftSettings settings_;
  std::optional<DriftWindow> last_good_;  // the accuracy test's reference
  int suspect_in_a_row_ = 0;
  bool flagged_ = false;
};

// P(X >= x) for a chi-square variable with `dof` degrees of freedom
// (Wilson-Hilferty; a few percent off in the far tail, which the flag's
// min effect sizes make moot).
double ChiSquareTail(double x, int dof);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_DRIFT_DETECTOR_H_
