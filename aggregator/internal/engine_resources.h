// What the round engine holds besides its rounds: its files, its ledger,
// its devices, its optimizer and its journal; and a round while it selects.
// Shared by the engine's source files (round_engine.cc, _metrics.cc,
// _start.cc, _watch.cc); guarded by the engine's lock.
#ifndef TINYFED_AGGREGATOR_INTERNAL_ENGINE_RESOURCES_H_
#define TINYFED_AGGREGATOR_INTERNAL_ENGINE_RESOURCES_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aggregator/internal/canary.h"
#include "aggregator/internal/drift_detector.h"
#include "aggregator/internal/log_limiter.h"
#include "aggregator/internal/round_journal.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server_optimizer.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/models/directory_lock.h"

namespace tinyfed::aggregator {

struct RoundEngine::Selection {
  int64_t round_id = 0;
  absl::Time started;
  absl::Time deadline;
  std::vector<std::string> admitted;  // in check-in order
};

// A regional aggregator's round, from the national task it runs under to
// the national outcome.
struct RegionalRound {
  v1::RoundTask national;
  int64_t round_id = 0;  // this region's round
  int cohort = 0;
  std::optional<RoundEngine::RegionalSum> sum;  // set: forwarded, awaiting the national outcome
  std::vector<std::string> in_sum;              // the members whose updates the sum holds
};

// A new version's canary rollout, until it is decided.
struct RoundEngine::Canary {
  uint64_t version = 0;
  v1::ModelRef previous;
  internal::CanaryEvidence evidence;
  std::set<std::string> members;   // internal::ChooseCanary
  std::set<std::string> offered;   // members told of the new version
  int64_t check_ins = 0;           // by members
  absl::Time next_operator_check;  // of the state, for `tinyfed rollout`
};

// Drift detectors: one per device that reported, and the fleet's.
struct RoundEngine::DriftWatch {
  std::map<std::string, internal::DriftDetector> devices;
  internal::DriftDetector fleet;
  internal::DriftWindow fleet_window;  // the reports since the last round ended
};

struct RoundEngine::Resources {
  std::unique_ptr<models::DirectoryLock> state_dir_lock;  // for this process alone
  std::unique_ptr<AggregatorState> state;
  std::unique_ptr<dp::PrivacyLedger> ledger;
  std::unique_ptr<DeviceRegistry> devices;
  std::unique_ptr<internal::RoundJournal> journal;  // the running round's events
  std::optional<ServerOptimizer> optimizer;
  std::optional<RegionalRound> regional;  // a regional aggregator's current round
  internal::LogLimiter device_log;        // what devices report: a line a minute each at most
  // Devices whose SecAgg+ shares others rejected, and by whom (this process's
  // life; an operator revokes for good).
  std::map<std::string, std::set<std::string>> rejected_by;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_INTERNAL_ENGINE_RESOURCES_H_
