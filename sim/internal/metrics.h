// How a simulation scores a head: accuracy, loss and per-class sensitivity
// and specificity on embeddings (and at a decision threshold), the
// baselines' and personalization's training, and the report's final section.
#ifndef TINYFED_SIM_INTERNAL_METRICS_H_
#define TINYFED_SIM_INTERNAL_METRICS_H_

#include <span>
#include <vector>

#include "sim/internal/federation_data.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim::internal {

// The probability of class `c` for each of `samples` embeddings.
std::vector<double> ClassProbabilities(const v1::Head& head, std::span<const float> embeddings, size_t samples, int c);
// Positive when its probability reaches the threshold, otherwise the most
// likely other class.
Metrics EvaluateAtThreshold(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels,
                            int positive, double threshold);
Metrics Evaluate(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels);
// `head` trained further for `epochs` (cosine decay); unchanged if training fails.
v1::Head TrainFrom(v1::Head head, std::span<const float> embeddings, std::span<const int> labels, int epochs,
                   const v1::TrainingSettings& t, uint64_t seed);
// A head's accuracy for a clinic, measured on the test split: each class's
// accuracy there, weighted by that class's share of the clinic's samples
// (train and slice). When clinics differ from the pool only in their class
// shares (no partition.shift), this is what the clinic's own slice
// measures, on the test split's thousands of cases instead of a few dozen,
// so that one case is not a point or more. Classes absent from the test
// split are left out and the other shares scaled up.
class CaseMix {
 public:
  CaseMix(const Clinic& clinic, std::span<const int> test_labels, size_t classes);
  // `right[i]`: whether the head answered test case i right.
  double Accuracy(const std::vector<bool>& right) const;

 private:
  std::span<const int> test_labels_;
  std::vector<double> weight_;  // per class: its share of the clinic's samples over its test cases
};
// Whether CaseMix measures the scenario's clinics: they differ from the
// pool in class shares only.
bool MeasuresOnCaseMix(const Scenario& s);
// Whether `head` answers each case right.
std::vector<bool> RightAnswers(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels);
// The baselines: a head trained on the union of the clinics' data
// (centralized) and each clinic's alone, from `zero`; they fill
// report.clinics.
void ScoreBaselines(const Scenario& s, const std::vector<Clinic>& clinics, const v1::Head& zero,
                    std::span<const float> test_embeddings, std::span<const int> test_labels,
                    const EvaluationSet& validation, SimulationReport& report);
// The final model on the test set and on each clinic's slice, and personalized.
void FinishReport(const Scenario& s, const std::vector<Clinic>& clinics, const v1::Head& federated,
                  std::span<const float> test_embeddings, std::span<const int> test_labels,
                  const EvaluationSet& validation, SimulationReport& report);

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_METRICS_H_
