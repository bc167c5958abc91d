// Whether a canary's telemetry shows a regression (config.h,
// RolloutConfig): each canary gateway's report on the new model is paired
// with its own last report on an older one, and the pairs are pooled:
//   held-out accuracy      fell by more than max_accuracy_drop
//   low confidence         the share of held-out cases answered with
//                          confidence below 0.5 rose by more than
//                          max_low_confidence_rise
//   refusals               more than max_refusals canary gateways kept
//                          their old model (a release that does not
//                          verify, a backbone that does not fit)
// Pairing each gateway with itself keeps the canary's data mix out of the
// comparison.
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

struct CanaryEvidence {
  std::map<std::string, std::pair<HeldOut, HeldOut>> pairs;  // device: before, after
  std::set<std::string> refused;
};

struct CanaryVerdict {
  bool regression = false;
  std::string summary;  // the pooled figures, for the log and the status page
};

CanaryVerdict JudgeCanary(const RolloutConfig& config, const CanaryEvidence& evidence);

// Whether `device` is in the canary of `version`: named, or drawn with
// probability canary_fraction from a hash of the two (so each version
// tries different gateways first).
bool InCanary(const RolloutConfig& config, const std::string& device, uint64_t version);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_CANARY_H_
