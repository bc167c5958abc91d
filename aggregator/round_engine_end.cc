// How a round ends in the round engine: a result charged to the ledger,
// applied by the server optimizer and published as the next model, in that
// order and undone together on failure; or an abort recorded with its
// reason. Either way the outcome is kept for members that ask after it.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "aggregator/internal/engine_resources.h"
#include "aggregator/internal/model_publisher.h"
#include "aggregator/internal/round.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/log_event.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

// Outcomes kept for clients that ask after their round ended.
constexpr size_t kOutcomesKept = 16;

}  // namespace

void RoundEngine::EndRoundLocked(internal::RoundEnd end) {
  const int64_t id = round_->id();
  const size_t cohort = round_->cohort_size();
  if (!end.aborted.empty()) {
    AbortRoundLocked(id, end.aborted);
    return;
  }
  if (secure_sum_observer_ && !end.secure_sum.empty()) secure_sum_observer_(id, end.secure_sum, end.survivor_devices);
  if (res_->regional) {
    ForwardLocked(std::move(end));
    return;
  }
  // Charge before anything derived from the sum leaves the aggregator.
  if (end.charge) {
    // A resumed round may have been charged by the killed process, which the
    // start voided: that charge stands again now, and Charge finds it paid.
    if (id == resumed_round_) (void)ReconcileLedgerLocked(id);
    if (absl::Status charged = res_->ledger->Charge(*end.charge); !charged.ok()) {
      AbortRoundLocked(id, StrCat("privacy ledger: ", charged.message()));
      if (charged.code() == absl::StatusCode::kResourceExhausted) CloseLocked("the privacy budget is spent");
      return;
    }
  }
  auto spent = res_->ledger->Spent();
  const double epsilon = spent.ok() ? spent->epsilon : std::nan("");

  std::vector<float> head = publisher_->head();
  const std::vector<float> m1 = res_->optimizer->first_moment(), m2 = res_->optimizer->second_moment();
  if (absl::Status applied = res_->optimizer->Apply(head, end.mean); !applied.ok()) {
    AbortRoundLocked(id, StrCat("server optimizer: ", applied.message()));
    return;
  }
  const RoundRecord record{.round_id = id,
                           .state = "done",
                           .selected = static_cast<int>(cohort),
                           .survivors = end.survivors,
                           .model_version = publisher_->latest().ref.version() + 1,
                           .epsilon = epsilon,
                           .reason = ""};
  const v1::ModelRef before = publisher_->latest().ref;
  Resources& res = *res_;  // the commit runs within this call, under mu_
  absl::Status published = publisher_->Publish(std::move(head), id, [&res, &record](const PublishedModel& row) {
    return res.state->CompleteRound(record, row, res.optimizer->first_moment(), res.optimizer->second_moment());
  });
  if (!published.ok()) {
    if (absl::Status restored = res_->optimizer->Restore(m1, m2); !restored.ok()) {
      spdlog::error("round {}: the server optimizer's moments cannot be restored after a failed publication: {}", id,
                    restored.ToString());
    }
    AbortRoundLocked(id, StrCat("publishing: ", published.message()));
    return;
  }
  const v1::ModelRef& model = publisher_->latest().ref;
  base::LogEvent(spdlog::level::info, "round_done",
                 {{"round", id}, {"model_version", model.version()}, {"survivors", end.survivors}},
                 fmt::format("round {} done: {} survived, epsilon spent {:.4f} (delta {}), model v{} published", id,
                             config_.national_clinics > 0
                                 ? fmt::format("{} clinics in the sums of {} regions", end.survivors, cohort)
                                 : fmt::format("{} of {}", end.survivors, cohort),
                             epsilon, config_.dp.delta, model.version()));
  v1::AwaitResponse outcome;
  auto* result = outcome.mutable_result();
  result->set_round_id(static_cast<uint64_t>(id));
  result->set_survivors(static_cast<uint32_t>(end.survivors));
  *result->mutable_published() = model;
  result->set_epsilon_spent(epsilon);
  RememberOutcomeLocked(id, std::move(outcome));
  round_.reset();
  ClearJournalLocked();
  ++completed_rounds_;
  metrics_.AddCounter("tinyfed_rounds_total", {{"outcome", "done"}});
  metrics_.AddCounter("tinyfed_models_published_total", {});
  RecordPublishedLocked(epsilon);
  WatchFleetDriftLocked();
  StartCanaryLocked(before);
  if (config_.max_rounds > 0 && completed_rounds_ >= config_.max_rounds) {
    CloseLocked(StrCat("all ", config_.max_rounds, " rounds are done"));
  }
}

void RoundEngine::RememberOutcomeLocked(int64_t round_id, v1::AwaitResponse outcome) {
  finished_[round_id] = std::move(outcome);
  while (finished_.size() > kOutcomesKept) finished_.erase(finished_.begin());
}

void RoundEngine::AbortRoundLocked(int64_t round_id, const std::string& reason) {
  base::LogEvent(spdlog::level::warn, "round_aborted", {{"round", round_id}},
                 fmt::format("round {} aborted: {}", round_id, reason));
  metrics_.AddCounter("tinyfed_rounds_total", {{"outcome", "aborted"}});
  if (auto s = res_->state->AbortRound(round_id, reason); !s.ok())
    spdlog::error("round {}: {}", round_id, s.ToString());
  v1::AwaitResponse outcome;
  outcome.mutable_aborted()->set_round_id(static_cast<uint64_t>(round_id));
  outcome.mutable_aborted()->set_reason(reason);
  RememberOutcomeLocked(round_id, std::move(outcome));
  round_.reset();
  selection_.reset();
  ClearJournalLocked();
  // An aborted round may have been charged before publishing failed. Should
  // voiding fail too (the disk still full), the next round's start or the
  // next process's settles it; meanwhile the ledger errs on the side of spent.
  (void)ReconcileLedgerLocked();
}

}  // namespace tinyfed::aggregator
