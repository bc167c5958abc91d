// What an operator sees of a federation, read from its state directory
// while the aggregator runs: the fleet (every enrolled or checked-in
// device, when it was last heard from, the model it keeps and its latest
// telemetry), the rounds with their survivors and the privacy spent after
// each, the published models, their canary rollouts and the drift flags. The operator port (operator_server.h)
// serves it as a page and as JSON, behind the operator's credential since
// it names devices.
//
//   auto reader = StatusReader::Open(config);
//   auto status = (*reader)->Read(absl::Now());
//   std::string html = StatusPageHtml(*status);
#ifndef TINYFED_AGGREGATOR_STATUS_PAGE_H_
#define TINYFED_AGGREGATOR_STATUS_PAGE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/state.h"

namespace tinyfed::dp {
class PrivacyLedger;
}

namespace tinyfed::aggregator {

class DeviceRegistry;

struct FleetDevice {
  std::string device_id;
  std::optional<absl::Time> enrolled, revoked;  // from the registry
  std::optional<absl::Time> first_seen;         // first check-in
  std::optional<absl::Time> last_report;        // latest telemetry
  // From the latest telemetry; what the device says of itself.
  uint64_t model_version = 0;
  double holdout_accuracy = 0.0;
  uint64_t holdout_samples = 0;
  std::vector<uint32_t> confidence_histogram;
  std::vector<uint64_t> class_counts;
  std::string model_status;  // why it keeps an older model, if it refused one
};

struct FederationStatus {
  absl::Time read_at;
  std::vector<FleetDevice> devices;  // sorted by id
  std::vector<RoundRecord> rounds;   // oldest first
  std::vector<PublishedModel> models;
  std::vector<RolloutRecord> rollouts;  // newest first
  std::vector<DriftFlag> drift;         // flags raised now
  double epsilon_spent = 0.0;
  double epsilon_budget = 0.0;
  double delta = 0.0;
};

// Read-only connections to a state directory's databases.
class StatusReader {
 public:
  static absl::StatusOr<std::unique_ptr<StatusReader>> Open(const Config& config);
  ~StatusReader();
  absl::StatusOr<FederationStatus> Read(absl::Time now);

 private:
  StatusReader() = default;
  std::unique_ptr<AggregatorState> state_;
  std::unique_ptr<dp::PrivacyLedger> ledger_;
  std::unique_ptr<DeviceRegistry> devices_;
  double epsilon_budget_ = 0.0, delta_ = 0.0;
};

// A self-contained HTML page (no script, no external resource) with charts
// as inline SVG; every device-supplied string is escaped.
std::string StatusPageHtml(const FederationStatus& status);
// The same as a JSON document, with times as ISO-8601 UTC strings.
std::string StatusJson(const FederationStatus& status);

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_STATUS_PAGE_H_
