// The aggregator's round engine: the whole server side of the round service
// (proto/tinyfed/v1/service.proto) without the transport, so the gRPC server,
// the tests and the simulator drive the very same code.
//
// One round at a time:
//   selecting     devices check in and are admitted until cohort_size *
//                 (1 + over_selection) are in, or the selection deadline
//                 passes with at least min_cohort
//   advertise     clients download the model, train, encode and advertise
//                 SecAgg+ keys (training deadline)
//   share_keys, masked_input, unmasking
//                 each closes when every remaining member answered or at its
//                 deadline; a member that misses a deadline is dropped
//   done          the SecAgg+ sum of the survivors is decoded (dp/ddg.h),
//                 averaged, applied by the server optimizer, charged to the
//                 privacy ledger, and published as a signed model v+1
// A round aborts cleanly (its row says why) when fewer than
// max(min_cohort, t) survive, or the privacy budget would be exceeded; the
// next round then starts. A restart aborts the round that was running and
// resumes from the last published model and optimizer state.
//
// Every handler validates the request header first: INVALID_ARGUMENT for a
// malformed request (bad device id, phase and message disagreeing, a sender
// id that is not the device's), FAILED_PRECONDITION for a request out of
// turn (another round, another phase, a device outside the cohort, a replay
// with different content), RESOURCE_EXHAUSTED past the budget. A refused
// request never changes the round. Thread-safe.
#ifndef TINYFED_AGGREGATOR_ROUND_ENGINE_H_
#define TINYFED_AGGREGATOR_ROUND_ENGINE_H_

#include <cstddef>
#include <functional>
#include <map>
#include <span>
#include <optional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/v1/bundle.pb.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator {

struct RoundRecord;

enum class Method { kCheckIn, kAwait, kSubmit, kGetModelChunk, kReportTelemetry };

class RoundEngine {
 public:
  using Clock = std::function<absl::Time()>;
  // Opens (or creates) the state directory; publishes the initial model as
  // version 1 on first start.
  static absl::StatusOr<std::unique_ptr<RoundEngine>> Create(const Config& config, Clock clock = absl::Now);
  ~RoundEngine();
  RoundEngine(const RoundEngine&) = delete;
  RoundEngine& operator=(const RoundEngine&) = delete;

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request);
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& request);
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& request);
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& request);
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& request);

  // Closes phases whose deadline has passed. The server calls it often.
  void Tick();
  // True once max_rounds rounds are done or the privacy budget is spent.
  bool closed() const;
  // The largest serialized request each method accepts (checked before parsing).
  size_t MaxRequestBytes(Method method) const;
  // Enrolled devices (state_dir/devices.db): the server authenticates calls
  // with it; the engine checks signed SecAgg+ keys against it.
  DeviceRegistry* devices() const;
  // The latest published model, and its head.
  v1::ModelRef latest_model() const;
  v1::Head latest_head() const;
  // The noise multiplier z in use (resolved from a target epsilon if need be).
  double noise_multiplier() const { return noise_multiplier_; }
  // How a round ended (a result or an abort), if it ended recently.
  std::optional<v1::AwaitResponse> Outcome(int64_t round_id) const;

  static constexpr uint32_t kMaxChunkBytes = 256 * 1024;

 private:
  struct Member;  // a device in a round's cohort
  struct Round;
  struct Published;
  explicit RoundEngine(const Config& config, Clock clock);
  absl::Status Init();

  absl::Status StartRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseSelectionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdvanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the current round costs with `survivors` clinics in its sum.
  absl::StatusOr<dp::PrivacyCharge> RoundChargeLocked(int survivors) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PatientUnit() const { return config_.dp.unit == DpUnit::kPatient && config_.dp.mode != DpMode::kOff; }
  // Logs whose SecAgg+ shares neighbors rejected, drops them from the round
  // and remembers them for later cohorts.
  void NameRejectedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Without SecAgg+ (a trusted aggregator): one update phase.
  void StartPlainRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::SubmitResponse> SubmitUpdate(const v1::SubmitRequest& request);
  void FinishPlainRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges the ledger (if `charge`), applies the optimizer to `mean` and publishes v+1.
  void PublishRoundLocked(std::span<const float> mean, int survivors, const dp::PrivacyCharge* charge)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbortRoundLocked(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Voids the ledger's charges of rounds that published no model (and
  // restores those that did): a charge exists iff its model is published.
  absl::Status ReconcileLedgerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseLocked(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PublishLocked(std::vector<float> head, int64_t round_id, const RoundRecord* record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A bundle file with its release signed by the publishing key.
  absl::StatusOr<std::unique_ptr<Published>> SignLocked(std::string bundle_file, uint64_t release_version) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The latest model under a fresh release (version + 1, new expiry).
  absl::Status ResignLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static v1::RetryLater RetryAfter(absl::Duration delay, std::string reason);
  // The cohort member that may submit h.phase() now (and, if the message
  // names one, whose SecAgg id is `sender`), or why not.
  absl::StatusOr<Member*> SubmitterLocked(const v1::RequestHeader& h, std::optional<uint32_t> sender)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if `bytes` repeats the member's message for `phase` (a retry after
  // a lost acknowledgement), FAILED_PRECONDITION for a different one.
  absl::StatusOr<bool> IsRetryLocked(const Member& m, const v1::RequestHeader& h, const std::string& bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every member still in the round has submitted `phase`.
  bool AllSubmittedLocked(v1::Phase phase) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A seed for `purpose` in round `round_id`: from the OS, or in a
  // simulation derived from config_.simulation_seed.
  void RoundSeed(int64_t round_id, std::string_view purpose, std::span<uint8_t> out) const;

  const Config config_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  struct Resources;  // state, ledger, key, optimizer: see round_engine.cc
  std::unique_ptr<Resources> res_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Published> latest_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Round> round_ ABSL_GUARDED_BY(mu_);
  // Outcomes of recent rounds, for clients that ask after the round ended.
  std::map<int64_t, v1::AwaitResponse> finished_ ABSL_GUARDED_BY(mu_);
  int64_t completed_rounds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_round_id_ ABSL_GUARDED_BY(mu_) = 1;
  double noise_multiplier_ = 0.0;  // resolved once from the config
  size_t head_size_ = 0;           // parameters in the head, fixed by the initial model
  std::string closed_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_ROUND_ENGINE_H_
