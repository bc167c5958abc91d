// The aggregator's durable state: one SQLite file (WAL, synchronous=FULL)
// under the state directory, next to the published model files and the
// privacy ledger.
//
//   devices    the population: every device that ever checked in
//   rounds     one row per round: running, done or aborted, with counts
//   models     published versions and the file each lives in
//   optimizer  the server optimizer's moments after the latest version
//   telemetry  the latest aggregate report of each device
//   rollouts   each version's canary rollout and how it was decided
//   drift      the drift flags raised now, per device and for the fleet
//
// A round's completion (its row, the new model's row and the optimizer
// moments) is one transaction, so a kill -9 leaves either the old version
// with its moments or the new one with its own. Thread-compatible: the round
// engine serializes access.
#ifndef TINYFED_AGGREGATOR_STATE_H_
#define TINYFED_AGGREGATOR_STATE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"

namespace SQLite {
class Database;
}

namespace tinyfed::aggregator {

struct PublishedModel {
  uint64_t version = 0;
  int64_t round_id = 0;  // 0 for the initial model
  std::string bundle_sha256;
  std::filesystem::path file;  // a serialized v1::SignedBundle
};

// The bundle of a published model, read back from its file: DATA_LOSS if the
// file is not the signed bundle the state recorded.
absl::StatusOr<v1::ModelBundle> ReadPublishedBundle(const PublishedModel& model);

struct RoundRecord {
  int64_t round_id = 0;
  std::string state;  // "running", "done" or "aborted"
  int selected = 0;
  int survivors = 0;
  uint64_t model_version = 0;  // published by this round
  double epsilon = 0.0;        // total spent after this round
  std::string reason;          // why it aborted
  int64_t started_ms = 0;      // Unix time
  int64_t finished_ms = 0;     // 0 while running
};

// A device of the population and the latest telemetry it reported, if any.
struct DeviceRecord {
  std::string device_id;
  int64_t first_seen_ms = 0;  // Unix time
  int64_t telemetry_ms = 0;   // 0: never reported
  std::string telemetry_json;
};

// A version's canary rollout (config.h, RolloutConfig).
struct RolloutRecord {
  uint64_t version = 0;
  uint64_t previous = 0;  // what everyone outside the canary keeps meanwhile
  std::string state;      // "canary", "promoted" or "rolled_back"
  int64_t started_ms = 0, decided_ms = 0;
  std::string decided_by;           // "telemetry", "check-ins" or "operator"
  std::string reason;               // the canary's evidence, or the operator's word
  uint64_t rollback_version = 0;    // the version that carries `previous`'s weights
  std::string operator_request;     // "promote" or "rollback", until the engine acts on it
  std::vector<std::string> canary;  // the devices offered the version, once decided
};

// A drift flag: "fleet" or a device id, since when, and the evidence.
struct DriftFlag {
  std::string scope;
  int64_t flagged_ms = 0;
  std::string reason;
};

class AggregatorState {
 public:
  // Creates the directory and database if missing.
  static absl::StatusOr<std::unique_ptr<AggregatorState>> Open(const std::filesystem::path& dir);
  ~AggregatorState();

  const std::filesystem::path& dir() const { return dir_; }

  absl::StatusOr<std::optional<PublishedModel>> LatestModel() const;
  absl::StatusOr<std::vector<PublishedModel>> Models() const;
  // A model published outside a round of this aggregator: the initial one,
  // or one a region mirrors.
  absl::Status RecordModel(const PublishedModel& model);

  absl::StatusOr<std::vector<RoundRecord>> Rounds() const;
  absl::StatusOr<int64_t> NextRoundId() const;
  absl::StatusOr<int64_t> CompletedRounds() const;
  absl::Status StartRound(int64_t round_id);
  absl::Status UpdateRoundSelected(int64_t round_id, int selected);
  absl::Status AbortRound(int64_t round_id, const std::string& reason);
  // True if round `round_id` has a row that says it is running.
  absl::StatusOr<bool> IsRunning(int64_t round_id) const;
  // Rounds left running by a previous process, except `resuming` (one it
  // journaled), are aborted; returns how many.
  absl::StatusOr<int> AbortUnfinishedRounds(const std::string& reason, int64_t resuming = 0);
  // A regional round whose sum went into a national round that published
  // round.model_version (mirrored, so its row is already in).
  absl::Status CompleteForwardedRound(const RoundRecord& round);
  // The round's row, the model's row and the optimizer moments, atomically.
  absl::Status CompleteRound(const RoundRecord& round, const PublishedModel& model,
                             const std::vector<float>& first_moment, const std::vector<float>& second_moment);
  // Empty vectors when no round has completed yet.
  absl::Status LoadOptimizer(std::vector<float>* first_moment, std::vector<float>* second_moment) const;

  // Adds the device to the population if new. Returns true if it was new.
  absl::StatusOr<bool> AddDevice(const std::string& device_id);
  absl::StatusOr<int64_t> PopulationSize() const;
  absl::Status RecordTelemetry(const std::string& device_id, const std::string& json);
  // The population, sorted by id, with each device's latest telemetry.
  absl::StatusOr<std::vector<DeviceRecord>> Devices() const;

  // Rollouts, newest first; `limit` 0: all.
  absl::StatusOr<std::vector<RolloutRecord>> Rollouts(int limit = 0) const;
  absl::Status StartRollout(uint64_t version, uint64_t previous);
  // The canary of `version` is promoted.
  absl::Status PromoteRollout(uint64_t version, const std::string& decided_by, const std::string& reason,
                              const std::vector<std::string>& canary);
  // The canary of `version` is rolled back by `model` (its previous
  // weights, published as a higher version): both rows and the optimizer
  // moments that go on from there, atomically.
  absl::Status RollBack(uint64_t version, const std::string& decided_by, const std::string& reason,
                        const std::vector<std::string>& canary, const PublishedModel& model,
                        const std::vector<float>& first_moment, const std::vector<float>& second_moment);
  // An operator's decision (`tinyfed rollout promote|rollback`), for the
  // engine to act on: FAILED_PRECONDITION unless a canary is running.
  absl::Status RequestRolloutDecision(const std::string& action);

  absl::Status SetDriftFlag(const DriftFlag& flag);
  absl::Status ClearDriftFlag(const std::string& scope);
  absl::StatusOr<std::vector<DriftFlag>> DriftFlags() const;

  // Bytes of every SQLite database in the directory, with their write-ahead logs.
  absl::StatusOr<uint64_t> DatabaseBytes() const;

 private:
  AggregatorState(std::filesystem::path dir, std::unique_ptr<SQLite::Database> db);
  // Marks round.round_id done with its counts; FAILED_PRECONDITION if it has
  // no row. Throws what SQLite throws.
  absl::Status MarkRoundDone(const RoundRecord& round);
  std::filesystem::path dir_;
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_STATE_H_
