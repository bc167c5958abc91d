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
// The engine is a facade: the selection is its own state, each selected
// round a state object with one state per phase (aggregator/internal/
// secagg_round.h, plain_round.h), planned by pure functions (round_plan.h)
// and published by the model publisher (model_publisher.h).
//
// A regional aggregator (config.upstream) runs the same rounds as its
// clinics' part of a national round, driven by its link to the national
// aggregator (region_link.h): a selection opens only for a national task,
// the round runs under that task's model and encoding, and ends with the
// survivors' sum still encoded, which the link forwards; the round's
// members wait until the national round publishes, then are told of the
// national model, which the region mirrors (it signs nothing). A regional
// aggregator keeps no privacy ledger: the national one accounts for every
// clinic.
//
// With [rollout], each new version goes to a canary cohort first (check-in
// and round results tell everyone else of the previous version), and no
// round starts until the canary's telemetry promotes it or rolls it back
// as a new version with the previous weights (round_engine_watch.cc); an
// operator may decide instead (`tinyfed rollout`). Every report also feeds
// drift detectors, one per device and one for the fleet (each round's
// reports pooled), whose flags go to the log, the metrics and the status.
//
// A round aborts cleanly (its row says why) when fewer than
// max(min_cohort, t) survive, or the privacy budget would be exceeded; the
// next round then starts.
//
// A restart resumes the round that was running: every event that changed it
// (a check-in admitted, the cohort's seeds drawn, a message accepted, a
// deadline passed) is journaled (aggregator/internal/round_journal.h) before
// any device sees its effect, and the next process replays the journal into
// the same round, SecAgg+ server state and routed messages included. The
// open phase then gets its whole deadline again from the restart, so members
// that kept their state reconnect and carry on; one that lost it misses the
// deadline and is dropped like any other. A round that cannot be replayed (a
// damaged journal, a configuration that plans another task) is aborted.
//
// Every handler validates the request header first: INVALID_ARGUMENT for a
// malformed request (bad device id, phase and message disagreeing, a sender
// id that is not the device's), FAILED_PRECONDITION for a request out of
// turn (another round, another phase, a device outside the cohort, a replay
// with different content), RESOURCE_EXHAUSTED past the budget. A refused
// request never changes the round. Thread-safe.
#ifndef TINYFED_AGGREGATOR_ROUND_ENGINE_H_
#define TINYFED_AGGREGATOR_ROUND_ENGINE_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/metrics.h"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/base/env.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/v1/bundle.pb.h"
#include "tinyfed/v1/journal.pb.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator {

namespace internal {
class DriftDetector;
struct DriftWindow;
class ModelPublisher;
class Round;
struct RoundEnd;
}  // namespace internal
namespace testing {
class RoundEnginePeer;  // aggregator/testing/round_engine_peer.h: what only tests may see
}  // namespace testing

enum class Method { kCheckIn, kAwait, kSubmit, kGetModelChunk, kReportTelemetry };

class RoundEngine {
 public:
  // Opens (or creates) the state directory; publishes the initial model as
  // version 1 on first start. `env` (the clock deadlines run on, the
  // randomness of SecAgg+ ids and seeds, model files) outlives the engine.
  static absl::StatusOr<std::unique_ptr<RoundEngine>> Create(const Config& config,
                                                             base::Env& env = base::Env::Default());
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
  // Takes the deadlines and the poll interval of `fresh` (a re-read config,
  // on SIGHUP) for phases that start from now on; returns what changed, as
  // "deadlines.training 300s -> 120s" lines. Everything else needs a restart.
  std::vector<std::string> ReloadDeadlines(const Config& fresh);
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
  // The version in canary ([rollout]), or 0 when none is.
  uint64_t canary_version() const;
  // The noise multiplier z and SecAgg+ bits in use (resolved from a target
  // epsilon and from dp.bits = 0 if need be).
  Encoding encoding() const { return encoding_; }
  // How a round ended (a result or an abort), if it ended recently.
  std::optional<v1::AwaitResponse> Outcome(int64_t round_id) const;
  // Rounds, phases, privacy and models as they happen; the server adds its
  // calls and refusals, the operator port serves them.
  Metrics& metrics() { return metrics_; }

  // A regional aggregator's side (round_engine_region.cc), for its link.
  // The sum a regional round forwards: its survivors' encoded updates
  // added mod 2^bits, and how many clinics they are.
  struct RegionalSum {
    int64_t round_id = 0;
    std::vector<uint32_t> sum;
    uint32_t contributors = 0;
  };
  // `blob`, a national SignedBundle, verified under the national roots and
  // served from now on (see ModelPublisher::Mirror); `roots`, rotations of
  // the national root, relayed likewise.
  absl::Status MirrorModel(std::string blob);
  absl::Status MirrorRoots(std::span<const v1::SignedMetadata> roots);
  // Opens a regional round for `national`, the task this region holds in a
  // national round; its id. FAILED_PRECONDITION if a round is running, or
  // the task's model is not the mirrored one.
  absl::StatusOr<int64_t> StartRegionalRound(const v1::RoundTask& national);
  // Regional round `round_id`'s sum, once its last phase closed; waits up
  // to `timeout` for it (nullopt: not yet). ABORTED saying why if the round
  // ended without one.
  absl::StatusOr<std::optional<RegionalSum>> AwaitRegionalSum(int64_t round_id, absl::Duration timeout);
  // How the national round that regional round `round_id` belongs to ended
  // (`national`: a result, whose model must be mirrored already, or an
  // abort); a round still running is aborted.
  void EndRegionalRound(int64_t round_id, const v1::AwaitResponse& national);
  // The national federation closed: so does this region.
  void CloseFederation(const std::string& reason);

  static constexpr uint32_t kMaxChunkBytes = 256 * 1024;

 private:
  friend class testing::RoundEnginePeer;
  struct Selection;  // a round while devices check in
  struct Resources;  // state, ledger, devices, optimizer: aggregator/internal/engine_resources.h
  RoundEngine(const Config& config, base::Env& env);
  absl::Status Init();

  // Opens round next_round_id_ to check-ins.
  absl::Status StartSelectionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cohort is in: draws the round's seeds and starts it.
  void CloseSelectionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plans the selected cohort's round with the seeds `drawn` at `now` and
  // starts it (or aborts it); a replayed cohort must plan the task it had.
  void StartCohortLocked(v1::CohortDrawn drawn, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Round `id` of `devices` (sorted) under SecAgg+ ids `ids`; an error is
  // why it cannot run (RESOURCE_EXHAUSTED: the privacy budget).
  absl::StatusOr<std::unique_ptr<internal::Round>> StartSecAggRoundLocked(int64_t id,
                                                                          const std::vector<std::string>& devices,
                                                                          const std::vector<uint32_t>& ids,
                                                                          const v1::CohortDrawn& drawn, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::unique_ptr<internal::Round>> StartPlainRoundLocked(int64_t id,
                                                                         const std::vector<std::string>& devices,
                                                                         const std::vector<uint32_t>& ids,
                                                                         const v1::CohortDrawn& drawn, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Journals `entry` (stamped with `now`) unless it is being replayed.
  absl::Status JournalLocked(v1::JournalEntry entry, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The round ended: nothing to resume.
  void ClearJournalLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rebuilds the round a previous process left running from its journal
  // (round_engine_start.cc); an error is why it cannot go on.
  absl::Status ResumeLocked(const std::vector<v1::JournalEntry>& journal) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One journaled event, as it happened at its time.
  absl::Status ReplayLocked(const v1::JournalEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The round ended: charge and publish its update, or record its abort.
  void EndRoundLocked(internal::RoundEnd end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs a device whose SecAgg+ shares neighbours rejected and remembers it
  // for later cohorts.
  void RejectedLocked(const std::string& device, const std::vector<std::string>& by) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbortRoundLocked(int64_t round_id, const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberOutcomeLocked(int64_t round_id, v1::AwaitResponse outcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A regional round ended with its encoded sum: it waits for the link.
  void ForwardLocked(internal::RoundEnd end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why no selection opens now (a canary undecided, a regional aggregator
  // between national rounds), or empty.
  std::string NoSelectionLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rollout and drift (round_engine_watch.cc). The canary left running by
  // a previous process, if any, and empty drift detectors.
  absl::Status LoadRolloutLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The canary of `version` among the population (internal/canary.h).
  absl::StatusOr<std::set<std::string>> ChooseCanaryLocked(uint64_t version) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The latest version was just published over `previous`.
  void StartCanaryLocked(const v1::ModelRef& previous) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The model `device`, which runs version `installed`, is told of: the
  // previous one outside a canary.
  v1::ModelRef ServedModelLocked(const std::string& device, uint64_t installed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A canary gateway's check-in counts toward the canary's window.
  void WatchCheckInLocked(const std::string& device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A report `t` of `device`: a canary gateway's says how the new model
  // and the head it replaced do on its held-out slice.
  void WatchCanaryLocked(const std::string& device, const v1::Telemetry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckOperatorDecisionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DecideCanaryLocked(bool promote, const std::string& decided_by, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchDriftLocked(const std::string& device, const v1::Telemetry& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A round ended: the reports since the last one are the fleet's window.
  void WatchFleetDriftLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ObserveDriftLocked(const std::string& scope, internal::DriftDetector& detector,
                          const internal::DriftWindow& window) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the phases the running round closed since the last call.
  void RecordClosedPhasesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The gauges of the latest model and of privacy spent.
  void RecordPublishedLocked(double epsilon_spent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Population and state size, read when metrics are scraped.
  void CollectStateMetricsAtScrape();
  // Voids the ledger's charges of rounds that published no model (and
  // restores those that did): a charge exists iff its model is published,
  // or its round is `in_flight` (about to publish).
  absl::Status ReconcileLedgerLocked(int64_t in_flight = 0) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseLocked(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The running round `round_id`, or FAILED_PRECONDITION naming the one that runs.
  absl::StatusOr<internal::Round*> RunningLocked(int64_t round_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A seed for `purpose` in round `round_id`: from the Env, or in a
  // simulation derived from config_.simulation_seed.
  void RoundSeed(int64_t round_id, std::string_view purpose, std::span<uint8_t> out) const;

  Config config_;  // only the deadlines change, under mu_ (ReloadDeadlines)
  base::Env& env_;
  mutable absl::Mutex mu_;
  std::unique_ptr<Resources> res_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<internal::ModelPublisher> publisher_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Selection> selection_ ABSL_GUARDED_BY(mu_);  // or a round_
  std::unique_ptr<internal::Round> round_ ABSL_GUARDED_BY(mu_);
  struct Canary;      // the latest version's canary, while it runs
  struct DriftWatch;  // the drift detectors
  std::unique_ptr<Canary> canary_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<DriftWatch> drift_ ABSL_GUARDED_BY(mu_);
  // Outcomes of recent rounds, for clients that ask after the round ended.
  std::map<int64_t, v1::AwaitResponse> finished_ ABSL_GUARDED_BY(mu_);
  int64_t completed_rounds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_round_id_ ABSL_GUARDED_BY(mu_) = 1;
  Encoding encoding_;  // resolved once from the config, at start
  // Parameters in the head, fixed by the initial model (a region's by the
  // first it mirrors).
  std::atomic<size_t> head_size_ = 0;
  std::string closed_reason_ ABSL_GUARDED_BY(mu_);
  bool replaying_ ABSL_GUARDED_BY(mu_) = false;     // a journal, at start: journal nothing again
  int64_t resumed_round_ ABSL_GUARDED_BY(mu_) = 0;  // the round replayed at start, if any
  Metrics metrics_;
  // Tests only: each SecAgg+ round's raw sum and its survivors, at its end.
  std::function<void(int64_t round_id, std::span<const uint32_t> sum, const std::vector<std::string>& survivors)>
      secure_sum_observer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_ROUND_ENGINE_H_
