// Deciding a screening class by a threshold on its probability instead of
// the most likely class: a clinic that must not miss a disease sets the
// threshold, on its own validation samples, so that a target share of that
// class's cases score above it.
//
// The threshold is a one-sided normal tolerance bound on the positives'
// log-odds: with 90 % confidence, fraction `target_sensitivity` of positives
// score above it (Natrella's approximation of the tolerance factor). A
// clinic-sized validation set holds a dozen or two positives, and the point
// estimate of their 5 % quantile would be too optimistic about the next
// patient. Never above 0.5: the threshold is there to catch more positives,
// not fewer.
#ifndef TINYFED_MODELS_DECISION_THRESHOLD_H_
#define TINYFED_MODELS_DECISION_THRESHOLD_H_

#include <span>

namespace tinyfed::models {

// `positive_probabilities`: the positive class's probability for each
// validation sample of that class. 0.5 with fewer than 3.
double ThresholdForSensitivity(std::span<const double> positive_probabilities, double target_sensitivity);

// `positive` when its softmax probability reaches `threshold`, otherwise the
// most likely other class; *probability gets the decided class's.
int DecideWithThreshold(std::span<const float> logits, int positive, double threshold, float* probability);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_DECISION_THRESHOLD_H_
