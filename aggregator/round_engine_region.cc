// A regional aggregator's side of the round engine (config.upstream): the
// national task that opens a selection, the encoded sum a round forwards,
// the national outcome its members are told of, and the national models
// and roots it mirrors.
#include "absl/strings/str_cat.h"
#include "aggregator/internal/engine_resources.h"
#include "aggregator/internal/model_publisher.h"
#include "aggregator/internal/round.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::aggregator {

using absl::StrCat;

std::string RoundEngine::NoSelectionLocked() const {
  if (canary_) {
    return StrCat("model v", canary_->version, " is in canary (", canary_->evidence.reports.size(), " of ",
                  config_.rollout.canary_reports, " reports)");
  }
  if (!config_.upstream) return "";
  if (!res_->regional) return "waiting for the national aggregator's next round";
  return StrCat("round ", res_->regional->round_id, " waits for national round ", res_->regional->national.round_id());
}

absl::Status RoundEngine::MirrorModel(std::string blob) {
  absl::MutexLock lock(&mu_);
  if (!config_.upstream) return absl::FailedPreconditionError("only a regional aggregator mirrors models");
  AggregatorState& state = *res_->state;
  TINYFED_RETURN_IF_ERROR(
      publisher_->Mirror(std::move(blob), [&state](const PublishedModel& row) { return state.RecordModel(row); }));
  head_size_ = publisher_->head().size();
  RecordPublishedLocked(0.0);
  return absl::OkStatus();
}

absl::Status RoundEngine::MirrorRoots(std::span<const v1::SignedMetadata> roots) {
  absl::MutexLock lock(&mu_);
  if (!config_.upstream) return absl::FailedPreconditionError("only a regional aggregator relays roots");
  return publisher_->AdvanceRoots(roots);
}

absl::StatusOr<int64_t> RoundEngine::StartRegionalRound(const v1::RoundTask& national) {
  absl::MutexLock lock(&mu_);
  if (!config_.upstream) return absl::FailedPreconditionError("only a regional aggregator runs regional rounds");
  if (!closed_reason_.empty()) return absl::FailedPreconditionError(StrCat("the federation closed: ", closed_reason_));
  if (round_ || selection_ || res_->regional) {
    const std::string busy = res_->regional ? NoSelectionLocked() : "a round is running";
    return absl::FailedPreconditionError(StrCat("national round ", national.round_id(), " cannot start here: ", busy));
  }
  if (!publisher_->has_model() || national.model().version() != publisher_->latest().ref.version() ||
      national.model().bundle_sha256() != publisher_->latest().ref.bundle_sha256()) {
    return absl::FailedPreconditionError(StrCat("national round ", national.round_id(), " trains model v",
                                                national.model().version(), ", which is not the mirrored model"));
  }
  res_->regional.emplace();
  res_->regional->national = national;
  if (absl::Status started = StartSelectionLocked(); !started.ok()) {
    res_->regional.reset();
    return started;
  }
  res_->regional->round_id = selection_->round_id;
  base::LogEvent(spdlog::level::info, "regional_round_opened",
                 {{"round", selection_->round_id}, {"national_round", national.round_id()}},
                 fmt::format("round {} is this region's part of national round {} (model v{})", selection_->round_id,
                             national.round_id(), national.model().version()));
  return selection_->round_id;
}

void RoundEngine::ForwardLocked(internal::RoundEnd end) {
  RegionalRound& r = *res_->regional;
  r.sum = RegionalSum{
      .round_id = round_->id(), .sum = std::move(end.secure_sum), .contributors = static_cast<uint32_t>(end.survivors)};
  r.in_sum = std::move(end.survivor_devices);
  round_.reset();
  base::LogEvent(spdlog::level::info, "round_forwarded",
                 {{"round", r.round_id}, {"national_round", r.national.round_id()}, {"survivors", end.survivors}},
                 fmt::format("round {}: the secure sum of {} of {} clinics goes to national round {}", r.round_id,
                             end.survivors, r.cohort, r.national.round_id()));
}

absl::StatusOr<std::optional<RoundEngine::RegionalSum>> RoundEngine::AwaitRegionalSum(int64_t round_id,
                                                                                      absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, round_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_.contains(round_id) ||
           (res_->regional && res_->regional->round_id == round_id && res_->regional->sum.has_value());
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (auto it = finished_.find(round_id); it != finished_.end()) {
    return absl::AbortedError(it->second.has_aborted() ? it->second.aborted().reason() : "the round ended");
  }
  if (!res_->regional || res_->regional->round_id != round_id) {
    return absl::FailedPreconditionError(StrCat("round ", round_id, " is not this region's current round"));
  }
  return res_->regional->sum;
}

void RoundEngine::EndRegionalRound(int64_t round_id, const v1::AwaitResponse& national) {
  absl::MutexLock lock(&mu_);
  if (!res_->regional || res_->regional->round_id != round_id) return;
  const RegionalRound r = *std::exchange(res_->regional, std::nullopt);
  const std::string national_round = StrCat("national round ", r.national.round_id());
  if (!r.sum) {
    if (selection_ || round_) {
      AbortRoundLocked(round_id, StrCat(national_round, " went on without this region: ",
                                        national.has_aborted() ? national.aborted().reason() : "it ended"));
    }
    return;
  }
  if (!national.has_result()) {
    AbortRoundLocked(round_id, StrCat(national_round, " ended without this region's sum: ",
                                      national.has_aborted() ? national.aborted().reason() : "no result"));
    return;
  }
  const v1::ModelRef& model = national.result().published();
  if (!publisher_->has_model() || publisher_->latest().ref.version() != model.version()) {
    AbortRoundLocked(round_id, StrCat(national_round, " published model v", model.version(),
                                      ", which this region could not mirror"));
    return;
  }
  const RoundRecord record{.round_id = round_id,
                           .state = "done",
                           .selected = r.cohort,
                           .survivors = static_cast<int>(r.sum->contributors),
                           .model_version = model.version(),
                           .epsilon = national.result().epsilon_spent(),
                           .reason = ""};
  if (absl::Status done = res_->state->CompleteForwardedRound(record); !done.ok()) {
    AbortRoundLocked(round_id, std::string(done.message()));
    return;
  }
  base::LogEvent(spdlog::level::info, "round_done",
                 {{"round", round_id}, {"national_round", r.national.round_id()}, {"model_version", model.version()}},
                 fmt::format("round {} done: {} of {} in the sum of {}, model v{} mirrored", round_id,
                             r.sum->contributors, r.cohort, national_round, model.version()));
  v1::AwaitResponse outcome;
  auto* result = outcome.mutable_result();
  result->set_round_id(static_cast<uint64_t>(round_id));
  result->set_survivors(r.sum->contributors);
  *result->mutable_published() = publisher_->latest().ref;
  result->set_epsilon_spent(national.result().epsilon_spent());
  RememberOutcomeLocked(round_id, std::move(outcome));
  ++completed_rounds_;
  metrics_.AddCounter("tinyfed_rounds_total", {{"outcome", "done"}});
}

void RoundEngine::CloseFederation(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (round_ || selection_) AbortRoundLocked(round_ ? round_->id() : selection_->round_id, reason);
  res_->regional.reset();
  CloseLocked(StrCat("the national federation closed: ", reason));
}

}  // namespace tinyfed::aggregator
