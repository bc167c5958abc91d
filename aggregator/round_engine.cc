#include "tinyfed/aggregator/round_engine.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "aggregator/internal/engine_resources.h"
#include "aggregator/internal/log_limiter.h"
#include "aggregator/internal/model_publisher.h"
#include "aggregator/internal/plain_round.h"
#include "aggregator/internal/round_journal.h"
#include "aggregator/internal/round_plan.h"
#include "aggregator/internal/secagg_round.h"
#include "aggregator/internal/telemetry_record.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/aggregator/server_optimizer.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/seed.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/models/directory_lock.h"
#include "tinyfed/proto/device_id.h"
#include "tinyfed/proto/device_text.h"

namespace tinyfed::aggregator {
namespace {

using absl::FailedPreconditionError;
using absl::InvalidArgumentError;
using absl::StrCat;
using internal::RetryAfter;

// Devices rejected by this many distinct neighbors are left out of later
// cohorts: one neighbor alone may be the liar.
constexpr size_t kRejectionsToExclude = 2;

absl::Status CheckHeader(const v1::RequestHeader& h, std::initializer_list<v1::Phase> allowed) {
  if (!proto::IsValidDeviceId(h.device_id())) {
    return InvalidArgumentError(StrCat("header.device_id must be 1 to ", proto::kMaxDeviceIdLength,
                                       " letters, digits, '.', '_' or '-' (got ", h.device_id().size(),
                                       " characters)"));
  }
  if (std::find(allowed.begin(), allowed.end(), h.phase()) == allowed.end()) {
    return InvalidArgumentError(StrCat("header.phase ", v1::Phase_Name(h.phase()), " does not belong to this method"));
  }
  // Round ids are int64 in the state; a larger one is no round.
  if (h.round_id() > static_cast<uint64_t>(INT64_MAX)) {
    return InvalidArgumentError(StrCat("header.round_id ", h.round_id(), " is not a round id (at most 2^63 - 1)"));
  }
  return absl::OkStatus();
}

}  // namespace

RoundEngine::RoundEngine(const Config& config, base::Env& env) : config_(config), env_(env) {}
RoundEngine::~RoundEngine() = default;

absl::StatusOr<std::unique_ptr<RoundEngine>> RoundEngine::Create(const Config& config, base::Env& env) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  auto engine = std::unique_ptr<RoundEngine>(new RoundEngine(config, env));
  TINYFED_RETURN_IF_ERROR(engine->Init());
  return engine;
}

bool RoundEngine::closed() const {
  absl::MutexLock lock(&mu_);
  return !closed_reason_.empty();
}

DeviceRegistry* RoundEngine::devices() const {
  absl::MutexLock lock(&mu_);
  return res_->devices.get();
}

v1::ModelRef RoundEngine::latest_model() const {
  absl::MutexLock lock(&mu_);
  return publisher_->has_model() ? publisher_->latest().ref : v1::ModelRef();
}

v1::Head RoundEngine::latest_head() const {
  absl::MutexLock lock(&mu_);
  return publisher_->bundle().head();
}

std::optional<v1::AwaitResponse> RoundEngine::Outcome(int64_t round_id) const {
  absl::MutexLock lock(&mu_);
  auto it = finished_.find(round_id);
  if (it == finished_.end()) return std::nullopt;
  return it->second;
}

size_t RoundEngine::MaxRequestBytes(Method method) const {
  switch (method) {
    case Method::kCheckIn:
    case Method::kAwait:
    case Method::kGetModelChunk:
      return 1024;
    case Method::kReportTelemetry:
      return 64 * 1024;
    case Method::kSubmit: {
      // A masked input of the head at `bits`, or k encrypted shares. A
      // region's bits are the national task's, its head the mirrored model's:
      // at most 32 bits, and before the first model a head of 2^20 values.
      const size_t head = head_size_.load();
      const size_t values = std::max<size_t>(head > 0 ? head : config_.upstream ? 1 << 20 : 1, 1);
      const size_t bits = config_.upstream || encoding_.bits == 0 ? 32 : static_cast<size_t>(encoding_.bits);
      return 64 * 1024 + (values * bits + 7) / 8 + CohortTarget(config_) * 256;
    }
  }
  return 1024;
}

void RoundEngine::CloseLocked(const std::string& reason) {
  if (!closed_reason_.empty()) return;
  closed_reason_ = reason;
  base::LogEvent(spdlog::level::info, "federation_closed", {}, fmt::format("federation closed: {}", reason));
}

void RoundEngine::RoundSeed(int64_t round_id, std::string_view purpose, std::span<uint8_t> out) const {
  if (!config_.simulation_seed) {
    env_.RandomBytes(out);
    return;
  }
  base::DeriveSeed(*config_.simulation_seed, static_cast<uint64_t>(round_id), "", purpose, out);
}

absl::StatusOr<internal::Round*> RoundEngine::RunningLocked(int64_t round_id) {
  const int64_t running = round_ ? round_->id() : selection_ ? selection_->round_id : 0;
  if (round_ && running == round_id) return round_.get();
  return FailedPreconditionError(
      StrCat("round ", round_id, " is not running", running > 0 ? StrCat(" (round ", running, " is)") : ""));
}

absl::Status RoundEngine::StartSelectionLocked() {
  auto selection = std::make_unique<Selection>();
  selection->round_id = next_round_id_;
  selection->started = env_.Now();
  selection->deadline = selection->started + config_.selection_timeout;
  (void)ReconcileLedgerLocked();  // logged; the next round's start retries
  // Journaled first: a journal of a round without its row is discarded.
  v1::JournalEntry opened;
  opened.set_round_id(static_cast<uint64_t>(selection->round_id));
  opened.set_selection_opened(true);
  TINYFED_RETURN_IF_ERROR(JournalLocked(std::move(opened), selection->started));
  TINYFED_RETURN_IF_ERROR(res_->state->StartRound(selection->round_id));
  ++next_round_id_;
  auto population = res_->state->PopulationSize();
  base::LogEvent(spdlog::level::info, "round_started", {{"round", selection->round_id}},
                 fmt::format("round {} started: selecting up to {} of a population of {}", selection->round_id,
                             CohortTarget(config_), population.ok() ? *population : -1));
  selection_ = std::move(selection);
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckInResponse> RoundEngine::CheckIn(const v1::CheckInRequest& request) {
  TINYFED_RETURN_IF_ERROR(CheckHeader(request.header(), {v1::PHASE_CHECK_IN}));
  const std::string& device = request.header().device_id();
  absl::MutexLock lock(&mu_);
  TINYFED_ASSIGN_OR_RETURN(bool added, res_->state->AddDevice(device));
  if (added) {
    base::LogEvent(spdlog::level::info, "device_joined", {{"device", device}},
                   fmt::format("device {} joined the population", device));
  }
  v1::CheckInResponse response;
  const std::vector<v1::SignedMetadata>& roots = publisher_->roots();
  for (uint64_t v = request.trusted_root_version(); v < roots.size(); ++v) *response.add_roots() = roots[v];
  if (publisher_->has_model())
    *response.mutable_latest_model() = ServedModelLocked(device, request.installed_model_version());
  WatchCheckInLocked(device);
  if (!closed_reason_.empty()) {
    response.mutable_closed()->set_reason(closed_reason_);
    return response;
  }
  if (!publisher_->has_model()) {
    *response.mutable_retry_later() =
        RetryAfter(config_.selection_timeout, "no model from the national aggregator yet");
    return response;
  }
  if (!round_ && !selection_) {
    if (const std::string why = NoSelectionLocked(); !why.empty()) {
      // A canary takes downloads and reports: no need to ask every poll.
      *response.mutable_retry_later() = RetryAfter(canary_ ? config_.selection_timeout : config_.poll_interval, why);
      return response;
    }
    TINYFED_RETURN_IF_ERROR(StartSelectionLocked());
  }
  if (const auto rejected = res_->rejected_by.find(device);
      rejected != res_->rejected_by.end() && rejected->second.size() >= kRejectionsToExclude) {
    *response.mutable_retry_later() = RetryAfter(
        absl::Hours(1),
        StrCat("excluded from cohorts: ", rejected->second.size(), " devices rejected its SecAgg+ key shares"));
    return response;
  }
  if (selection_) {
    Selection& s = *selection_;
    const size_t target = CohortTarget(config_);
    if (std::find(s.admitted.begin(), s.admitted.end(), device) == s.admitted.end()) {
      if (s.admitted.size() >= target) {
        *response.mutable_retry_later() = RetryAfter(config_.selection_timeout, "the cohort is full");
        return response;
      }
      v1::JournalEntry admitted;
      admitted.set_round_id(static_cast<uint64_t>(s.round_id));
      admitted.set_admitted(device);
      if (absl::Status journaled = JournalLocked(std::move(admitted), env_.Now()); !journaled.ok()) {
        return absl::UnavailableError(StrCat("cannot admit device ", device, " now: ", journaled.message()));
      }
      s.admitted.push_back(device);
    }
    response.mutable_admitted()->set_round_id(static_cast<uint64_t>(s.round_id));
    if (s.admitted.size() >= target) CloseSelectionLocked();
    return response;
  }
  if (round_->MayRejoin(device)) {
    response.mutable_admitted()->set_round_id(static_cast<uint64_t>(round_->id()));
    return response;
  }
  *response.mutable_retry_later() = RetryAfter(round_->deadline() - env_.Now() + config_.poll_interval,
                                               StrCat("round ", round_->id(), " is in progress"));
  return response;
}

void RoundEngine::CloseSelectionLocked() {
  const int64_t id = selection_->round_id;
  v1::CohortDrawn drawn;
  for (auto [purpose, seed] : {std::pair{"ids", drawn.mutable_ids_seed()},
                               {"rotation", drawn.mutable_rotation_seed()},
                               {"graph", drawn.mutable_graph_seed()},
                               {"central", drawn.mutable_central_noise_seed()}}) {
    seed->resize(32);
    RoundSeed(id, purpose, std::span(reinterpret_cast<uint8_t*>(seed->data()), 32));
  }
  StartCohortLocked(std::move(drawn), env_.Now());
}

void RoundEngine::StartCohortLocked(v1::CohortDrawn drawn, absl::Time now) {
  const std::unique_ptr<Selection> s = std::move(selection_);
  metrics_.Observe("tinyfed_round_phase_seconds", {{"phase", "selection"}}, absl::ToDoubleSeconds(now - s->started));
  metrics_.SetGauge("tinyfed_round_cohort_size", {}, static_cast<double>(s->admitted.size()));
  // Sorted, so the ids depend on who was admitted, not on arrival order.
  std::vector<std::string> devices = s->admitted;
  std::sort(devices.begin(), devices.end());
  if (drawn.ids_seed().size() != 32 || drawn.rotation_seed().size() != 32 || drawn.graph_seed().size() != 32 ||
      drawn.central_noise_seed().size() != 32) {
    AbortRoundLocked(s->round_id, "the round's journaled seeds are not 32 bytes each");
    return;
  }
  const std::vector<uint32_t> ids = internal::ShuffledIds(
      devices.size(), std::span<const uint8_t, 32>(reinterpret_cast<const uint8_t*>(drawn.ids_seed().data()), 32));
  if (auto updated = res_->state->UpdateRoundSelected(s->round_id, static_cast<int>(devices.size())); !updated.ok()) {
    AbortRoundLocked(s->round_id, std::string(updated.message()));
    return;
  }
  auto round = config_.secure_aggregation ? StartSecAggRoundLocked(s->round_id, devices, ids, drawn, now)
                                          : StartPlainRoundLocked(s->round_id, devices, ids, drawn, now);
  if (!round.ok()) {
    AbortRoundLocked(s->round_id, std::string(round.status().message()));
    if (round.status().code() == absl::StatusCode::kResourceExhausted) {
      CloseLocked(StrCat("the privacy budget cannot pay for another round (", round.status().message(), ")"));
    }
    return;
  }
  const std::string task_sha256 = base::Sha256((*round)->task().SerializeAsString());
  if (replaying_ && drawn.task_sha256() != task_sha256) {
    AbortRoundLocked(s->round_id, "the configuration plans another task than the round started with");
    return;
  }
  drawn.set_task_sha256(task_sha256);
  v1::JournalEntry entry;
  entry.set_round_id(static_cast<uint64_t>(s->round_id));
  *entry.mutable_cohort_drawn() = std::move(drawn);
  if (absl::Status journaled = JournalLocked(std::move(entry), now); !journaled.ok()) {
    AbortRoundLocked(s->round_id, std::string(journaled.message()));
    return;
  }
  round_ = *std::move(round);
}

absl::StatusOr<std::unique_ptr<internal::Round>> RoundEngine::StartSecAggRoundLocked(
    int64_t id, const std::vector<std::string>& devices, const std::vector<uint32_t>& ids, const v1::CohortDrawn& drawn,
    absl::Time now) {
  const int n = static_cast<int>(devices.size());
  internal::SecAggSeeds seeds;
  std::memcpy(seeds.rotation.data(), drawn.rotation_seed().data(), seeds.rotation.size());
  std::memcpy(seeds.graph.data(), drawn.graph_seed().data(), seeds.graph.size());
  auto on_rejected = [this](const std::string& device, const std::vector<std::string>& by)
                         ABSL_NO_THREAD_SAFETY_ANALYSIS { RejectedLocked(device, by); };  // from a Submit or a Tick
  if (res_->regional) {
    TINYFED_ASSIGN_OR_RETURN(internal::SecAggPlan plan,
                             internal::PlanRegionalRound(config_, id, n, res_->regional->national, seeds.graph));
    res_->regional->cohort = n;
    base::LogEvent(spdlog::level::info, "round_cohort",
                   {{"round", id}, {"cohort", n}, {"bits", static_cast<int>(plan.task.secagg().bits())}},
                   fmt::format("round {} cohort: {} devices for national round {} (SecAgg+ k={} t={}, {} bits, {} "
                               "values)",
                               id, n, res_->regional->national.round_id(), plan.params.degree(),
                               plan.params.threshold(), plan.task.secagg().bits(), plan.ddg.config.dimension));
    return internal::SecAggRound::Start(config_, id, devices, ids, std::move(plan), *res_->devices, nullptr,
                                        on_rejected, now);
  }
  TINYFED_ASSIGN_OR_RETURN(internal::SecAggPlan plan, internal::PlanSecAggRound(config_, id, n, head_size_, encoding_,
                                                                                publisher_->latest().ref, seeds));
  const dp::DdgParams ddg = plan.ddg;
  auto charge = [this, id, ddg, orders = res_->ledger->orders()](int survivors) {
    return internal::SecAggRoundCharge(config_, id, encoding_.noise_multiplier, ddg, survivors, orders);
  };
  // Refuse up front a round whose worst case (the fewest survivors, hence the
  // least noise) would take the ledger past its budget.
  TINYFED_ASSIGN_OR_RETURN(dp::PrivacyCharge worst, charge(plan.min_survivors));
  if (absl::Status paid = internal::CheckBudget(config_, *res_->ledger, worst); !paid.ok()) {
    return absl::Status(paid.code(), StrCat("with ", plan.min_survivors, " survivors ", paid.message()));
  }
  base::LogEvent(spdlog::level::info, "round_cohort", {{"round", id}, {"cohort", n}, {"bits", encoding_.bits}},
                 fmt::format("round {} cohort: {} devices (SecAgg+ k={} t={}, {} bits, {} values; noise multiplier "
                             "{:.4f})",
                             id, n, plan.params.degree(), plan.params.threshold(), encoding_.bits,
                             plan.ddg.config.dimension, encoding_.noise_multiplier));
  return internal::SecAggRound::Start(config_, id, devices, ids, std::move(plan), *res_->devices, charge, on_rejected,
                                      now);
}

absl::StatusOr<std::unique_ptr<internal::Round>> RoundEngine::StartPlainRoundLocked(
    int64_t id, const std::vector<std::string>& devices, const std::vector<uint32_t>& ids, const v1::CohortDrawn& drawn,
    absl::Time now) {
  const int n = static_cast<int>(devices.size());
  if (n < config_.min_cohort) {
    return FailedPreconditionError(
        StrCat("only ", n, " devices checked in; at least ", config_.min_cohort, " must survive"));
  }
  internal::PlainRound::Charge charge;
  dp::Seed noise_seed{};
  if (config_.dp.mode == DpMode::kCentral) {
    charge = [this, id, orders = res_->ledger->orders()](int survivors) {
      return internal::CentralRoundCharge(config_, id, encoding_.noise_multiplier, survivors, orders);
    };
    TINYFED_ASSIGN_OR_RETURN(dp::PrivacyCharge one, charge(n));
    TINYFED_RETURN_IF_ERROR(internal::CheckBudget(config_, *res_->ledger, one));
    std::memcpy(noise_seed.data(), drawn.central_noise_seed().data(), noise_seed.size());
  }
  base::LogEvent(
      spdlog::level::info, "round_cohort", {{"round", id}, {"cohort", n}},
      fmt::format("round {} cohort: {} devices (no SecAgg+: trusted aggregator, DP {}, compression {})", id, n,
                  config_.dp.mode == DpMode::kCentral ? "central" : "off", v1::Compression_Name(config_.compression)));
  return std::make_unique<internal::PlainRound>(
      config_, id, devices, ids, internal::PlanPlainRound(config_, id, n, publisher_->latest().ref), head_size_,
      encoding_.noise_multiplier, noise_seed, std::move(charge), now);
}

void RoundEngine::RejectedLocked(const std::string& device, const std::vector<std::string>& by) {
  std::set<std::string>& all = res_->rejected_by[device];
  all.insert(by.begin(), by.end());
  spdlog::warn("round {}: device {} is left out of the sum: its key shares failed authentication at {} ({}){}",
               round_->id(), device, absl::StrJoin(by, ", "),
               by.size() == 1 ? "or that device lies" : "several neighbors",
               all.size() >= kRejectionsToExclude
                   ? StrCat("; excluded from later cohorts (rejected by ", all.size(), " devices)")
                   : "");
}

absl::StatusOr<v1::AwaitResponse> RoundEngine::Await(const v1::AwaitRequest& request) {
  const v1::RequestHeader& h = request.header();
  TINYFED_RETURN_IF_ERROR(CheckHeader(
      h, {v1::PHASE_TASK, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING, v1::PHASE_RESULT}));
  absl::MutexLock lock(&mu_);
  const int64_t round_id = static_cast<int64_t>(h.round_id());
  if (auto it = finished_.find(round_id); it != finished_.end()) {
    v1::AwaitResponse outcome = it->second;
    // A member outside the canary learns of the model it may install (every
    // member trained on the previous one).
    if (outcome.has_result() && canary_ && outcome.result().published().version() == canary_->version) {
      *outcome.mutable_result()->mutable_published() = ServedModelLocked(h.device_id(), canary_->previous.version());
    }
    return outcome;
  }
  if (res_->regional && res_->regional->sum && res_->regional->round_id == round_id) {
    const auto& in_sum = res_->regional->in_sum;
    if (std::find(in_sum.begin(), in_sum.end(), h.device_id()) == in_sum.end()) {
      return FailedPreconditionError(StrCat("device ", h.device_id(), " is not in round ", round_id, "'s sum"));
    }
    v1::AwaitResponse response;
    *response.mutable_wait() =
        RetryAfter(config_.poll_interval,
                   StrCat("the regions' sums are being added in national round ", res_->regional->national.round_id()));
    return response;
  }
  if (selection_ && selection_->round_id == round_id) {
    const auto& admitted = selection_->admitted;
    if (std::find(admitted.begin(), admitted.end(), h.device_id()) == admitted.end()) {
      return FailedPreconditionError(StrCat("device ", h.device_id(), " is not admitted to round ", round_id));
    }
    v1::AwaitResponse response;
    *response.mutable_wait() =
        RetryAfter(std::min(config_.poll_interval, selection_->deadline - env_.Now()), "the cohort is being selected");
    return response;
  }
  TINYFED_ASSIGN_OR_RETURN(internal::Round * round, RunningLocked(round_id));
  return round->Await(h, env_.Now(), config_.poll_interval);
}

absl::StatusOr<v1::SubmitResponse> RoundEngine::Submit(const v1::SubmitRequest& request) {
  const v1::RequestHeader& h = request.header();
  TINYFED_RETURN_IF_ERROR(CheckHeader(h, {v1::PHASE_ADVERTISE_KEYS, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT,
                                          v1::PHASE_UNMASKING, v1::PHASE_UPDATE}));
  absl::MutexLock lock(&mu_);
  TINYFED_ASSIGN_OR_RETURN(internal::Round * round, RunningLocked(static_cast<int64_t>(h.round_id())));
  const bool retry = round->HasSubmitted(h.device_id(), h.phase());
  const absl::Time now = env_.Now();
  TINYFED_ASSIGN_OR_RETURN(std::optional<internal::RoundEnd> end, round->Submit(request, now));
  if (!retry) {
    v1::JournalEntry submitted;
    submitted.set_round_id(h.round_id());
    *submitted.mutable_submitted() = request;
    // Unjournaled, the round could not be resumed as the device believes it.
    if (absl::Status journaled = JournalLocked(std::move(submitted), now); !journaled.ok()) {
      AbortRoundLocked(round->id(), std::string(journaled.message()));
      return absl::UnavailableError(StrCat("round ", h.round_id(), " aborted: ", journaled.message()));
    }
  }
  RecordClosedPhasesLocked();
  if (end) EndRoundLocked(*std::move(end));
  return v1::SubmitResponse();
}

void RoundEngine::Tick() {
  absl::MutexLock lock(&mu_);
  if (absl::Status resigned = publisher_->ResignIfAging(); !resigned.ok()) {
    spdlog::error("cannot re-sign the release of model v{}: {}", publisher_->latest().ref.version(),
                  resigned.ToString());
  }
  CheckOperatorDecisionLocked();
  const absl::Time now = env_.Now();
  if (selection_ && now >= selection_->deadline) {
    if (static_cast<int>(selection_->admitted.size()) >= config_.min_cohort) {
      CloseSelectionLocked();
    } else {
      // Keep selecting: a round needs min_cohort devices to start at all.
      selection_->deadline = now + config_.selection_timeout;
    }
    return;
  }
  if (!round_ || now < round_->deadline()) return;
  v1::JournalEntry passed;
  passed.set_round_id(static_cast<uint64_t>(round_->id()));
  passed.set_deadline_passed(true);
  if (absl::Status journaled = JournalLocked(std::move(passed), now); !journaled.ok()) {
    AbortRoundLocked(round_->id(), std::string(journaled.message()));
    return;
  }
  std::optional<internal::RoundEnd> end = round_->CloseOnDeadline(now);
  RecordClosedPhasesLocked();
  if (end) EndRoundLocked(*std::move(end));
}

std::vector<std::string> RoundEngine::ReloadDeadlines(const Config& fresh) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> changed;
  auto take = [&](const char* name, absl::Duration Config::*field) {
    if (config_.*field == fresh.*field) return;
    changed.push_back(
        StrCat(name, " ", absl::FormatDuration(config_.*field), " -> ", absl::FormatDuration(fresh.*field)));
    config_.*field = fresh.*field;
  };
  take("deadlines.selection", &Config::selection_timeout);
  take("deadlines.training", &Config::training_timeout);
  take("deadlines.share_keys", &Config::share_keys_timeout);
  take("deadlines.masked_input", &Config::masked_input_timeout);
  take("deadlines.unmasking", &Config::unmasking_timeout);
  take("rounds.poll_interval_ms", &Config::poll_interval);
  return changed;
}

absl::StatusOr<v1::ModelChunk> RoundEngine::GetModelChunk(const v1::ModelChunkRequest& request) {
  TINYFED_RETURN_IF_ERROR(CheckHeader(request.header(), {v1::PHASE_MODEL_DOWNLOAD}));
  // The latest model is served from memory with its known hash; an older one
  // (only a lagging client asks) is read and hashed on demand, unlocked.
  std::filesystem::path file;
  {
    absl::MutexLock lock(&mu_);
    if (!publisher_->has_model()) return absl::UnavailableError("no model from the national aggregator yet");
    const internal::ModelPublisher::Published& latest = publisher_->latest();
    if (request.version() == latest.ref.version()) {
      return request.head_only()
                 ? internal::ModelPublisher::ChunkOf(latest.head_blob, latest.ref.head_download_sha256(), request)
                 : internal::ModelPublisher::ChunkOf(latest.blob, latest.ref.download_sha256(), request);
    }
    TINYFED_ASSIGN_OR_RETURN(std::vector<PublishedModel> published, res_->state->Models());
    auto it = std::find_if(published.begin(), published.end(),
                           [&](const PublishedModel& m) { return m.version == request.version(); });
    if (it == published.end()) {
      return absl::NotFoundError(StrCat("model version ", request.version(), " was never published"));
    }
    file = it->file;
  }
  TINYFED_ASSIGN_OR_RETURN(std::string bytes, env_.ReadFile(file, 1 << 30));
  if (request.head_only()) bytes = internal::HeadBlobOf(bytes);
  return internal::ModelPublisher::ChunkOf(bytes, base::Sha256(bytes), request);
}

absl::StatusOr<v1::TelemetryResponse> RoundEngine::ReportTelemetry(const v1::TelemetryRequest& request) {
  TINYFED_RETURN_IF_ERROR(CheckHeader(request.header(), {v1::PHASE_TELEMETRY}));
  const v1::Telemetry& t = request.telemetry();
  TINYFED_ASSIGN_OR_RETURN(const std::string record, internal::TelemetryRecord(t));
  absl::MutexLock lock(&mu_);
  const std::string& device = request.header().device_id();
  TINYFED_RETURN_IF_ERROR(res_->state->RecordTelemetry(device, record));
  WatchCanaryLocked(device, t);
  WatchDriftLocked(device, t);
  if (!t.model_status().empty()) {
    res_->device_log.Warn(StrCat("telemetry ", device), StrCat("device ", device, " keeps model v", t.model_version(),
                                                               ": '", proto::DeviceText(t.model_status()), "'"));
  }
  return v1::TelemetryResponse();
}

}  // namespace tinyfed::aggregator
