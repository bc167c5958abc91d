// Whether a canary's telemetry shows a regression (config.h,
// RolloutConfig): each canary gateway reports how the new model and the
// head it replaced do on its held-out slice, and the pairs are pooled:
//   held-out accuracy      fell by more than max_accuracy_drop, and the
//                          samples the new model got wrong and the old one
//                          right outnumber the reverse beyond chance (an
//                          exact one-sided McNemar test at p <= 0.05, so a
//                          small canary's noise rolls nothing back)
//   low confidence         the share of held-out cases answered with
//                          confidence below 0.5 rose by more than
//                          max_low_confidence_rise
//   refusals               more than max_refusals canary gateways kept
//                          their old model (a release that does not
//                          verify, a backbone that does not fit)
// Both heads on the same slice at the same time: neither the canary's data
// mix nor the time between reports enters the comparison.
#ifndef TINYFED_AGGREGATOR_INTERNAL_CANARY_H_
#define TINYFED_AGGREGATOR_INTERNAL_CANARY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tinyfed/aggregator/config.h"

namespace tinyfed::aggregator::internal {

// What a gateway's report says of its held-out slice.
struct HeldOut {
  uint64_t model_version = 0;
  uint64_t samples = 0;
  double accuracy = 0.0;
  std::vector<uint64_t> confidence_histogram;  // 10 bins over [0, 1]
};

// One canary gateway's report: the replaced head and the new model on the
// same held-out samples, and the samples where they disagree.
struct CanaryReport {
  HeldOut before, after;
  uint64_t regressions = 0;   // right before, wrong after
  uint64_t improvements = 0;  // wrong before, right after
};

struct CanaryEvidence {
  std::map<std::string, CanaryReport> reports;  // by device
  std::set<std::string> refused;
};

// The significance a canary's accuracy drop must reach to roll it back.
inline constexpr double kCanarySignificance = 0.05;

struct CanaryVerdict {
  bool regression = false;
  std::string summary;  // the pooled figures, for the log and the status page
};

CanaryVerdict JudgeCanary(const RolloutConfig& config, const CanaryEvidence& evidence);

// The canary of `version` among `population`: the named devices, those
// drawn with probability canary_fraction from a hash of the device and the
// version (so each version tries different gateways first), and at least
// canary_reports devices (the lowest draws), so the canary can decide.
std::set<std::string> ChooseCanary(const RolloutConfig& config, const std::vector<std::string>& population,
                                   uint64_t version);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_CANARY_H_
