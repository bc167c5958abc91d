#include "aggregator/internal/telemetry_record.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tinyfed::aggregator::internal {

using absl::InvalidArgumentError;
using absl::StrCat;

absl::StatusOr<std::string> TelemetryRecord(const v1::Telemetry& t) {
  if (t.class_counts_size() > 4096) return InvalidArgumentError("telemetry.class_counts holds more than 4096 classes");
  if (t.confidence_histogram_size() > 100)
    return InvalidArgumentError("telemetry.confidence_histogram has over 100 bins");
  if (!(t.holdout_accuracy() >= 0.0f && t.holdout_accuracy() <= 1.0f)) {
    return InvalidArgumentError(StrCat("telemetry.holdout_accuracy must be in [0, 1], got ", t.holdout_accuracy()));
  }
  if (t.model_status().size() > 512) return InvalidArgumentError("telemetry.model_status is over 512 characters");
  if (t.eligibility_status().size() > 512) {
    return InvalidArgumentError("telemetry.eligibility_status is over 512 characters");
  }
  if (!(t.personal_holdout_accuracy() >= 0.0f && t.personal_holdout_accuracy() <= 1.0f)) {
    return InvalidArgumentError(
        StrCat("telemetry.personal_holdout_accuracy must be in [0, 1], got ", t.personal_holdout_accuracy()));
  }
  if (t.overrides() > t.confirmations() || t.confirmations() > t.predictions()) {
    return InvalidArgumentError("telemetry: overrides <= confirmations <= predictions");
  }
  if (t.replaced_model_version() > 0 &&
      (t.replaced_model_version() >= t.model_version() ||
       !(t.replaced_holdout_accuracy() >= 0.0f && t.replaced_holdout_accuracy() <= 1.0f) ||
       t.replaced_confidence_histogram_size() > 100 ||
       static_cast<uint64_t>(t.regressions()) + t.improvements() > t.holdout_samples())) {
    return InvalidArgumentError(
        "telemetry.replaced_*: an older model's accuracy in [0, 1], at most 100 confidence bins, and "
        "regressions + improvements <= holdout_samples");
  }
  if (t.recent_confidence_histogram_size() > 100) {
    return InvalidArgumentError("telemetry.recent_confidence_histogram has over 100 bins");
  }
  uint64_t recent_cases = 0;
  for (uint32_t n : t.recent_confidence_histogram()) recent_cases += n;
  if (recent_cases > kMaxRecentCases) {
    return InvalidArgumentError(StrCat("telemetry.recent_confidence_histogram counts ", recent_cases,
                                       " cases since the last report; at most ", kMaxRecentCases));
  }
  if (t.recent_predicted_classes_size() > 4096 || t.holdout_predicted_classes_size() > 4096) {
    return InvalidArgumentError(
        "telemetry: recent_predicted_classes or holdout_predicted_classes holds more than 4096 classes");
  }
  const nlohmann::json report = {
      {"model_version", t.model_version()},
      {"class_counts", std::vector<uint64_t>(t.class_counts().begin(), t.class_counts().end())},
      {"confidence_histogram", std::vector<uint32_t>(t.confidence_histogram().begin(), t.confidence_histogram().end())},
      {"holdout_samples", t.holdout_samples()},
      {"holdout_accuracy", t.holdout_accuracy()},
      {"model_status", t.model_status()},
      {"personal_holdout_accuracy", t.personal_holdout_accuracy()},
      {"personal_head_served", t.personal_head_served()},
      {"predictions", t.predictions()},
      {"confirmations", t.confirmations()},
      {"overrides", t.overrides()},
      {"rounds_ineligible", t.rounds_ineligible()},
      {"eligibility_status", t.eligibility_status()}};
  // Invalid UTF-8 (which protobuf would not parse anyway) is replaced, never thrown.
  return report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tinyfed::aggregator::internal
