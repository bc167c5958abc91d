#include "aggregator/internal/canary.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tinyfed/base/sha256.h"

namespace tinyfed::aggregator::internal {
namespace {

struct Pooled {
  double samples = 0.0, correct = 0.0, low = 0.0, answered = 0.0;
  double accuracy() const { return samples > 0 ? correct / samples : 0.0; }
  double low_share() const { return answered > 0 ? low / answered : 0.0; }
  void Add(const HeldOut& h) {
    samples += static_cast<double>(h.samples);
    correct += h.accuracy * static_cast<double>(h.samples);
    for (size_t bin = 0; bin < h.confidence_histogram.size(); ++bin) {
      const double n = static_cast<double>(h.confidence_histogram[bin]);
      answered += n;
      if (bin * 2 < h.confidence_histogram.size()) low += n;
    }
  }
};

}  // namespace

CanaryVerdict JudgeCanary(const RolloutConfig& config, const CanaryEvidence& evidence) {
  Pooled before, after;
  for (const auto& [device, pair] : evidence.pairs) {
    before.Add(pair.first);
    after.Add(pair.second);
  }
  CanaryVerdict v;
  const double drop = before.accuracy() - after.accuracy();
  const double rise = after.low_share() - before.low_share();
  v.summary = absl::StrFormat(
      "%d canary gateways: held-out accuracy %.1f%% -> %.1f%% (max drop %.1f points), answers below 0.5 "
      "confidence %.1f%% -> %.1f%% (max rise %.1f points), %d refused the model (max %d)",
      static_cast<int>(evidence.pairs.size()), 100 * before.accuracy(), 100 * after.accuracy(),
      100 * config.max_accuracy_drop, 100 * before.low_share(), 100 * after.low_share(),
      100 * config.max_low_confidence_rise, static_cast<int>(evidence.refused.size()), config.max_refusals);
  v.regression = drop > config.max_accuracy_drop || rise > config.max_low_confidence_rise ||
                 static_cast<int>(evidence.refused.size()) > config.max_refusals;
  return v;
}

bool InCanary(const RolloutConfig& config, const std::string& device, uint64_t version) {
  if (std::find(config.canary_devices.begin(), config.canary_devices.end(), device) != config.canary_devices.end()) {
    return true;
  }
  if (config.canary_fraction <= 0.0) return false;
  const std::string digest =
      base::Sha256(absl::StrCat("tinyfed canary v1", std::string(1, '\0'), version, std::string(1, '\0'), device));
  uint64_t draw = 0;
  std::memcpy(&draw, digest.data(), sizeof(draw));
  return static_cast<double>(draw >> 11) * 0x1.0p-53 < config.canary_fraction;
}

}  // namespace tinyfed::aggregator::internal
