// The engine's start: its state, ledger, devices, model and optimizer, and
// the round a killed aggregator left running, rebuilt from its journal
// (aggregator/internal/round_journal.h) by replaying each event through the
// same code that handled it live, at the time it happened.
#include "absl/strings/str_cat.h"
#include "aggregator/internal/engine_resources.h"
#include "aggregator/internal/model_publisher.h"
#include "aggregator/internal/round.h"
#include "aggregator/internal/round_journal.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/directory_lock.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

constexpr char kCannotResume[] = "the aggregator restarted and cannot resume it: ";

// Replayed events were logged by the process that saw them happen; the
// replay runs in Init, before the server's threads, so the level can be
// raised for its duration alone.
class QuietLogs {
 public:
  QuietLogs() : level_(spdlog::get_level()) { spdlog::set_level(spdlog::level::err); }
  ~QuietLogs() { spdlog::set_level(level_); }

 private:
  const spdlog::level::level_enum level_;
};

}  // namespace

absl::Status RoundEngine::Init() {
  absl::MutexLock lock(&mu_);
  res_ = std::make_unique<Resources>();
  TINYFED_ASSIGN_OR_RETURN(res_->state_dir_lock,
                           models::DirectoryLock::Acquire(config_.state_dir, "tinyfed aggregator"));
  TINYFED_ASSIGN_OR_RETURN(res_->state, AggregatorState::Open(config_.state_dir));
  TINYFED_ASSIGN_OR_RETURN(res_->devices, DeviceRegistry::Open(config_.state_dir, env_));
  if (config_.upstream) {
    TINYFED_ASSIGN_OR_RETURN(publisher_, internal::ModelPublisher::OpenMirror(config_, env_));
  } else {
    TINYFED_ASSIGN_OR_RETURN(publisher_, internal::ModelPublisher::Open(config_, env_));
  }
  TINYFED_ASSIGN_OR_RETURN(res_->ledger,
                           dp::PrivacyLedger::Open(config_.state_dir / "ledger.db",
                                                   {.epsilon = config_.dp.epsilon_budget, .delta = config_.dp.delta}));
  // A previous process may have died between charging a round and publishing it.
  TINYFED_RETURN_IF_ERROR(ReconcileLedgerLocked());
  TINYFED_RETURN_IF_ERROR(publisher_->Load(*res_->state));

  head_size_ = publisher_->head().size();
  if (!config_.upstream) {  // a region applies no update of its own
    TINYFED_ASSIGN_OR_RETURN(ServerOptimizer optimizer, ServerOptimizer::Create(config_.optimizer, head_size_));
    res_->optimizer.emplace(std::move(optimizer));
    std::vector<float> m1, m2;
    TINYFED_RETURN_IF_ERROR(res_->state->LoadOptimizer(&m1, &m2));
    if (!m1.empty()) TINYFED_RETURN_IF_ERROR(res_->optimizer->Restore(std::move(m1), std::move(m2)));
  }

  TINYFED_RETURN_IF_ERROR(LoadRolloutLocked());
  TINYFED_ASSIGN_OR_RETURN(res_->journal, internal::RoundJournal::Open(config_.state_dir / "round_journal.db"));
  // The round a previous process left running goes on if it was journaled.
  absl::StatusOr<std::vector<v1::JournalEntry>> journal = res_->journal->Entries();
  std::string unresumable = "the aggregator restarted and had no journal of it";
  int64_t resuming = 0;
  if (config_.upstream) {
    // Its place in the national round (the link's SecAgg+ secrets) died
    // with the process: the national round goes on without this region.
    unresumable = "the regional aggregator restarted: its part in the national round is lost";
  } else if (!journal.ok()) {
    unresumable = StrCat(kCannotResume, journal.status().message());
  } else if (!journal->empty()) {
    TINYFED_ASSIGN_OR_RETURN(bool running, res_->state->IsRunning(static_cast<int64_t>(journal->front().round_id())));
    if (running) resuming = static_cast<int64_t>(journal->front().round_id());
  }
  TINYFED_ASSIGN_OR_RETURN(int aborted, res_->state->AbortUnfinishedRounds(unresumable, resuming));
  if (aborted > 0) spdlog::warn("aborted {} round(s) left running by a previous aggregator process", aborted);
  TINYFED_ASSIGN_OR_RETURN(completed_rounds_, res_->state->CompletedRounds());
  TINYFED_ASSIGN_OR_RETURN(next_round_id_, res_->state->NextRoundId());
  // A region's noise is the national task's.
  if (!config_.upstream) {
    TINYFED_ASSIGN_OR_RETURN(encoding_, ResolveEncoding(config_, head_size_));
  }
  TINYFED_ASSIGN_OR_RETURN(dp::PrivacySpent spent, res_->ledger->Spent());
  const uint64_t version = publisher_->has_model() ? publisher_->latest().ref.version() : 0;
  base::LogEvent(spdlog::level::info, "aggregator_ready", {{"model_version", version}},
                 fmt::format("aggregator ready: model v{}, {} rounds done, epsilon spent {:.4f} (delta {}), noise "
                             "multiplier {:.4f}{}",
                             version, completed_rounds_, spent.epsilon, config_.dp.delta, encoding_.noise_multiplier,
                             encoding_.bits > 0 ? fmt::format(", SecAgg+ at {} bits", encoding_.bits) : ""));
  if (config_.max_rounds > 0 && completed_rounds_ >= config_.max_rounds) {
    CloseLocked(StrCat("all ", config_.max_rounds, " rounds are done"));
  }
  RecordPublishedLocked(spent.epsilon);
  CollectStateMetricsAtScrape();
  if (resuming == 0) return res_->journal->Clear();
  if (absl::Status resumed = ResumeLocked(*journal); !resumed.ok()) {
    AbortRoundLocked(resuming, StrCat(kCannotResume, resumed.message()));
  }
  return absl::OkStatus();
}

absl::Status RoundEngine::ReconcileLedgerLocked(int64_t in_flight) {
  TINYFED_ASSIGN_OR_RETURN(std::vector<PublishedModel> models, res_->state->Models());
  std::vector<int64_t> published;
  for (const PublishedModel& m : models) {
    if (m.round_id > 0) published.push_back(m.round_id);
  }
  if (in_flight > 0) published.push_back(in_flight);
  auto reconciled = res_->ledger->Reconcile(published);
  if (!reconciled.ok()) {
    spdlog::error("privacy ledger: cannot void the charges of unpublished rounds yet: {}",
                  reconciled.status().ToString());
    return reconciled.status();
  }
  if (reconciled->voided > 0 || reconciled->restored > 0) {
    spdlog::warn("privacy ledger: voided the charges of {} round(s) that published nothing, restored {}",
                 reconciled->voided, reconciled->restored);
  }
  return absl::OkStatus();
}

absl::Status RoundEngine::JournalLocked(v1::JournalEntry entry, absl::Time now) {
  if (replaying_ || config_.upstream) return absl::OkStatus();  // a region cannot resume (Init)
  entry.set_at_unix_micros(absl::ToUnixMicros(now));
  return res_->journal->Append(entry);
}

void RoundEngine::ClearJournalLocked() {
  if (absl::Status cleared = res_->journal->Clear(); !cleared.ok()) {
    // The round's row is final, so the next process discards the journal.
    spdlog::error("{}", cleared.ToString());
  }
}

absl::Status RoundEngine::ResumeLocked(const std::vector<v1::JournalEntry>& journal) {
  const int64_t id = static_cast<int64_t>(journal.front().round_id());
  if (!journal.front().selection_opened()) {
    return absl::DataLossError("its journal does not begin where the round began");
  }
  resumed_round_ = id;
  {
    QuietLogs quiet;
    replaying_ = true;
    absl::Status replayed = absl::OkStatus();
    // Until the journal ends, or the round does (as it did live).
    for (size_t i = 0; i < journal.size() && replayed.ok() && (i == 0 || selection_ || round_); ++i) {
      replayed = ReplayLocked(journal[i]);
      if (!replayed.ok()) replayed = absl::Status(replayed.code(), StrCat("event ", i + 1, ": ", replayed.message()));
      if (round_) (void)round_->TakeClosedPhases();  // the previous process timed them
    }
    replaying_ = false;
    TINYFED_RETURN_IF_ERROR(replayed);
  }
  const absl::Time now = env_.Now();
  std::string where;
  if (selection_) {
    selection_->deadline = now + config_.selection_timeout;
    where = StrCat("selection with ", selection_->admitted.size(), " admitted");
  } else if (round_) {
    round_->Resume(now);
    where = StrCat("its current phase, open until ",
                   absl::FormatTime("%H:%M:%S", round_->deadline(), absl::UTCTimeZone()), "Z");
  } else {
    // The killed process journaled the round's last event but died before
    // publishing (or aborting): the replay did it.
    const auto outcome = finished_.find(id);
    base::LogEvent(spdlog::level::info, "round_resumed", {{"round", id}},
                   fmt::format("round {} resumed from its journal ({} events) and ended: {}", id, journal.size(),
                               outcome == finished_.end() ? "unknown"
                               : outcome->second.has_result()
                                   ? StrCat("model v", outcome->second.result().published().version(), " published")
                                   : StrCat("aborted: ", outcome->second.aborted().reason())));
    return absl::OkStatus();
  }
  metrics_.AddCounter("tinyfed_rounds_resumed_total", {});
  base::LogEvent(spdlog::level::info, "round_resumed", {{"round", id}},
                 fmt::format("round {} resumed from its journal ({} events) at {}", id, journal.size(), where));
  return absl::OkStatus();
}

absl::Status RoundEngine::ReplayLocked(const v1::JournalEntry& entry) {
  const int64_t id = static_cast<int64_t>(entry.round_id());
  const absl::Time at = absl::FromUnixMicros(entry.at_unix_micros());
  switch (entry.event_case()) {
    case v1::JournalEntry::kSelectionOpened: {
      if (selection_ || round_) return absl::DataLossError("the selection opens twice");
      selection_ = std::make_unique<Selection>();
      selection_->round_id = id;
      selection_->started = at;
      selection_->deadline = at + config_.selection_timeout;
      return absl::OkStatus();
    }
    case v1::JournalEntry::kAdmitted:
      if (!selection_) return absl::DataLossError("a device is admitted after the selection closed");
      selection_->admitted.push_back(entry.admitted());
      return absl::OkStatus();
    case v1::JournalEntry::kCohortDrawn:
      if (!selection_) return absl::DataLossError("the cohort is drawn twice");
      StartCohortLocked(entry.cohort_drawn(), at);
      return absl::OkStatus();
    case v1::JournalEntry::kSubmitted:
    case v1::JournalEntry::kDeadlinePassed: {
      if (!round_) return absl::DataLossError("a message or deadline without a running round");
      std::optional<internal::RoundEnd> end;
      if (entry.has_submitted()) {
        TINYFED_ASSIGN_OR_RETURN(end, round_->Submit(entry.submitted(), at));
      } else {
        end = round_->CloseOnDeadline(at);
      }
      if (end) EndRoundLocked(*std::move(end));
      return absl::OkStatus();
    }
    case v1::JournalEntry::EVENT_NOT_SET:
      break;
  }
  return absl::DataLossError("an event of an unknown kind (written by a newer tinyfed?)");
}

}  // namespace tinyfed::aggregator
