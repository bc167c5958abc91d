#include "aggregator/internal/canary.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/models/evaluate.h"

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
  uint64_t regressions = 0, improvements = 0;
  for (const auto& [device, report] : evidence.reports) {
    before.Add(report.before);
    after.Add(report.after);
    regressions += report.regressions;
    improvements += report.improvements;
  }
  CanaryVerdict v;
  const double drop = before.accuracy() - after.accuracy();
  const double p_value = models::McNemarPValue(static_cast<uint32_t>(regressions), static_cast<uint32_t>(improvements));
  const double rise = after.low_share() - before.low_share();
  v.summary = absl::StrFormat(
      "%d canary gateways: held-out accuracy %.1f%% -> %.1f%% (max drop %.1f points; %d samples worse, %d better, "
      "p %.2g), answers below 0.5 confidence %.1f%% -> %.1f%% (max rise %.1f points), %d refused the model (max %d)",
      static_cast<int>(evidence.reports.size()), 100 * before.accuracy(), 100 * after.accuracy(),
      100 * config.max_accuracy_drop, static_cast<int>(regressions), static_cast<int>(improvements), p_value,
      100 * before.low_share(), 100 * after.low_share(), 100 * config.max_low_confidence_rise,
      static_cast<int>(evidence.refused.size()), config.max_refusals);
  v.regression = (drop > config.max_accuracy_drop && p_value <= kCanarySignificance) ||
                 rise > config.max_low_confidence_rise ||
                 static_cast<int>(evidence.refused.size()) > config.max_refusals;
  return v;
}

std::set<std::string> ChooseCanary(const RolloutConfig& config, const std::vector<std::string>& population,
                                   uint64_t version) {
  std::set<std::string> canary;
  for (const std::string& d : config.canary_devices) canary.insert(d);
  std::vector<std::pair<double, std::string>> draws;
  for (const std::string& device : population) {
    const std::string digest =
        base::Sha256(absl::StrCat("tinyfed canary v1", std::string(1, '\0'), version, std::string(1, '\0'), device));
    uint64_t bits = 0;
    std::memcpy(&bits, digest.data(), sizeof(bits));
    draws.emplace_back(static_cast<double>(bits >> 11) * 0x1.0p-53, device);  // uniform in [0, 1)
  }
  std::sort(draws.begin(), draws.end());
  for (size_t i = 0; i < draws.size(); ++i) {
    if (draws[i].first >= config.canary_fraction && canary.size() >= static_cast<size_t>(config.canary_reports)) break;
    canary.insert(draws[i].second);
  }
  return canary;
}

}  // namespace tinyfed::aggregator::internal
