// How the round engine watches its models in the field (config.h,
// RolloutConfig; internal/canary.h; internal/drift_detector.h): the canary
// rollout of each new version, decided by the canary's telemetry, the
// check-in window or an operator; and drift of each gateway's inputs and
// the fleet's, from their telemetry.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "aggregator/internal/canary.h"
#include "aggregator/internal/drift_detector.h"
#include "aggregator/internal/engine_resources.h"
#include "aggregator/internal/model_publisher.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

// The reference of a published model, from its file.
absl::StatusOr<v1::ModelRef> RefOf(const PublishedModel& model) {
  TINYFED_ASSIGN_OR_RETURN(std::string bytes, base::ReadFileBytes(model.file, 1 << 30));
  return internal::ModelRefOf(model.version, model.bundle_sha256, bytes, internal::HeadBlobOf(bytes));
}

// What a report says of the held-out slice under the head the installed
// model replaced and under the installed one.
internal::CanaryReport CanaryReportOf(const v1::Telemetry& t) {
  return {.before = {.model_version = t.replaced_model_version(),
                     .samples = t.holdout_samples(),
                     .accuracy = t.replaced_holdout_accuracy(),
                     .confidence_histogram = {t.replaced_confidence_histogram().begin(),
                                              t.replaced_confidence_histogram().end()}},
          .after = {.model_version = t.model_version(),
                    .samples = t.holdout_samples(),
                    .accuracy = t.holdout_accuracy(),
                    .confidence_histogram = {t.confidence_histogram().begin(), t.confidence_histogram().end()}},
          .regressions = t.regressions(),
          .improvements = t.improvements()};
}

}  // namespace

absl::Status RoundEngine::LoadRolloutLocked() {
  drift_ = std::make_unique<DriftWatch>();
  TINYFED_ASSIGN_OR_RETURN(std::vector<RolloutRecord> latest, res_->state->Rollouts(1));
  if (latest.empty() || latest[0].state != "canary" || !publisher_->has_model()) return absl::OkStatus();
  if (latest[0].version != publisher_->latest().ref.version()) {
    return absl::DataLossError(StrCat("the state says model v", latest[0].version, " is in canary, but the latest is v",
                                      publisher_->latest().ref.version()));
  }
  TINYFED_ASSIGN_OR_RETURN(std::vector<PublishedModel> models, res_->state->Models());
  const auto previous = std::find_if(models.begin(), models.end(),
                                     [&](const PublishedModel& m) { return m.version == latest[0].previous; });
  if (previous == models.end()) {
    return absl::DataLossError(StrCat("model v", latest[0].previous, ", kept outside the canary, is not published"));
  }
  canary_ = std::make_unique<Canary>();
  canary_->version = latest[0].version;
  TINYFED_ASSIGN_OR_RETURN(canary_->previous, RefOf(*previous));
  TINYFED_ASSIGN_OR_RETURN(canary_->members, ChooseCanaryLocked(canary_->version));
  spdlog::info("model v{} is still in canary: its evidence is gathered again", canary_->version);
  return absl::OkStatus();
}

uint64_t RoundEngine::canary_version() const {
  absl::MutexLock lock(&mu_);
  return canary_ ? canary_->version : 0;
}

absl::StatusOr<std::set<std::string>> RoundEngine::ChooseCanaryLocked(uint64_t version) const {
  TINYFED_ASSIGN_OR_RETURN(std::vector<DeviceRecord> population, res_->state->Devices());
  std::vector<std::string> ids;
  for (const DeviceRecord& d : population) ids.push_back(d.device_id);
  return internal::ChooseCanary(config_.rollout, ids, version);
}

void RoundEngine::StartCanaryLocked(const v1::ModelRef& previous) {
  if (!config_.rollout.enabled()) return;
  const uint64_t version = publisher_->latest().ref.version();
  if (absl::Status started = res_->state->StartRollout(version, previous.version()); !started.ok()) {
    // Without its row a restart would not know of the canary: promote now.
    spdlog::error("model v{} goes to every gateway without a canary: {}", version, started.ToString());
    return;
  }
  absl::StatusOr<std::set<std::string>> members = ChooseCanaryLocked(version);
  if (!members.ok()) {
    spdlog::error("model v{} goes to every gateway without a canary: {}", version, members.status().ToString());
    return;
  }
  canary_ = std::make_unique<Canary>();
  canary_->version = version;
  canary_->previous = previous;
  canary_->members = *std::move(members);
  base::LogEvent(spdlog::level::info, "canary_started", {{"model_version", version}},
                 fmt::format("model v{} goes to its canary first; the others keep v{} until it is decided", version,
                             previous.version()));
}

v1::ModelRef RoundEngine::ServedModelLocked(const std::string& device, uint64_t installed) {
  const v1::ModelRef& latest = publisher_->latest().ref;
  if (!canary_) return latest;
  // A canary gateway behind the previous model catches up to it first, so
  // that its report compares the new model with what everyone else keeps.
  if (!canary_->members.contains(device) || installed < canary_->previous.version()) return canary_->previous;
  canary_->offered.insert(device);
  return latest;
}

void RoundEngine::WatchCheckInLocked(const std::string& device) {
  if (!canary_ || !canary_->members.contains(device) || ++canary_->check_ins < config_.rollout.canary_check_ins) {
    return;
  }
  DecideCanaryLocked(false, "check-ins",
                     StrCat("only ", canary_->evidence.reports.size(), " of ", config_.rollout.canary_reports,
                            " canary reports came in ", canary_->check_ins, " check-ins of canary gateways"));
}

void RoundEngine::WatchCanaryLocked(const std::string& device, const v1::Telemetry& t) {
  if (!canary_ || !canary_->offered.contains(device)) return;
  internal::CanaryEvidence& e = canary_->evidence;
  if (t.model_version() < canary_->version) {
    if (!t.model_status().empty()) e.refused.insert(device);
  } else if (t.model_version() == canary_->version && t.replaced_model_version() == canary_->previous.version() &&
             t.holdout_samples() > 0) {
    e.reports[device] = CanaryReportOf(t);  // the latest report of each gateway
  }
  const bool refused = static_cast<int>(e.refused.size()) > config_.rollout.max_refusals;
  if (!refused && static_cast<int>(e.reports.size()) < config_.rollout.canary_reports) return;
  const internal::CanaryVerdict verdict = internal::JudgeCanary(config_.rollout, e);
  DecideCanaryLocked(!refused && !verdict.regression, "telemetry", verdict.summary);
}

void RoundEngine::CheckOperatorDecisionLocked() {
  // Tick runs every few milliseconds; the operator is answered within a second.
  if (!canary_ || env_.Now() < canary_->next_operator_check) return;
  canary_->next_operator_check = env_.Now() + absl::Seconds(1);
  absl::StatusOr<std::vector<RolloutRecord>> latest = res_->state->Rollouts(1);
  if (!latest.ok() || latest->empty() || latest->front().operator_request.empty()) return;
  const bool promote = latest->front().operator_request == "promote";
  DecideCanaryLocked(promote, "operator",
                     StrCat("the operator ", promote ? "promoted" : "rolled back", " it; the canary had ",
                            internal::JudgeCanary(config_.rollout, canary_->evidence).summary));
}

void RoundEngine::DecideCanaryLocked(bool promote, const std::string& decided_by, const std::string& reason) {
  const uint64_t version = canary_->version, kept = canary_->previous.version();
  const std::vector<std::string> offered(canary_->offered.begin(), canary_->offered.end());
  if (promote) {
    if (absl::Status s = res_->state->PromoteRollout(version, decided_by, reason, offered); !s.ok()) {
      spdlog::error("model v{}: cannot record its promotion, so it stays in canary: {}", version, s.ToString());
      return;
    }
    canary_.reset();
    metrics_.AddCounter("tinyfed_rollouts_total", {{"outcome", "promoted"}});
    base::LogEvent(spdlog::level::info, "canary_promoted", {{"model_version", version}},
                   fmt::format("model v{} promoted to every gateway ({}): {}", version, decided_by, reason));
    return;
  }
  // Rolled back: the previous weights as the next version, so that a
  // gateway's rollback protection (versions only go up) still holds.
  absl::StatusOr<std::vector<PublishedModel>> models = res_->state->Models();
  absl::StatusOr<v1::ModelBundle> previous = absl::NotFoundError("model not published");
  if (models.ok()) {
    for (const PublishedModel& m : *models) {
      if (m.version == kept) previous = ReadPublishedBundle(m);
    }
  }
  if (!previous.ok()) {
    spdlog::error("model v{}: cannot read model v{} to roll back to, so it stays in canary: {}", version, kept,
                  previous.status().ToString());
    return;
  }
  // The momentum carried the update that regressed: the optimizer starts
  // again from the restored weights.
  const std::vector<float> m1(res_->optimizer->first_moment().size(), 0.0f),
      m2(res_->optimizer->second_moment().size(), 0.0f);
  AggregatorState& state = *res_->state;
  absl::Status published = publisher_->Publish(
      internal::HeadParameters(previous->head()), 0,
      [&](const PublishedModel& row) { return state.RollBack(version, decided_by, reason, offered, row, m1, m2); });
  if (!published.ok()) {
    spdlog::error("model v{}: the rollback cannot be published, so it stays in canary: {}", version,
                  published.ToString());
    return;
  }
  if (absl::Status reset = res_->optimizer->Restore(m1, m2); !reset.ok()) {
    spdlog::error("the server optimizer's moments cannot be reset after a rollback: {}", reset.ToString());
  }
  canary_.reset();
  metrics_.AddCounter("tinyfed_rollouts_total", {{"outcome", "rolled_back"}});
  metrics_.AddCounter("tinyfed_models_published_total", {});
  const absl::StatusOr<dp::PrivacySpent> spent = res_->ledger->Spent();
  RecordPublishedLocked(spent.ok() ? spent->epsilon : 0.0);
  base::LogEvent(spdlog::level::warn, "canary_rolled_back",
                 {{"model_version", version}, {"rollback_version", publisher_->latest().ref.version()}},
                 fmt::format("model v{} rolled back ({}): model v{} carries v{}'s weights to every gateway: {}",
                             version, decided_by, publisher_->latest().ref.version(), kept, reason));
}

void RoundEngine::WatchDriftLocked(const std::string& device, const v1::Telemetry& t) {
  internal::DriftWindow w;
  w.confidence.assign(t.recent_confidence_histogram().begin(), t.recent_confidence_histogram().end());
  w.classes.assign(t.recent_predicted_classes().begin(), t.recent_predicted_classes().end());
  w.holdout_confidence.assign(t.confidence_histogram().begin(), t.confidence_histogram().end());
  w.holdout_classes.assign(t.holdout_predicted_classes().begin(), t.holdout_predicted_classes().end());
  w.holdout_samples = t.holdout_samples();
  w.model_version = t.model_version();
  w.holdout_correct = static_cast<uint64_t>(std::llround(t.holdout_accuracy() * t.holdout_samples()));
  drift_->fleet_window.Add(w);
  ObserveDriftLocked(device, drift_->devices[device], w);
}

void RoundEngine::WatchFleetDriftLocked() {
  internal::DriftWindow w = std::exchange(drift_->fleet_window, {});
  if (w.cases() == 0 && w.holdout_samples == 0) return;
  ObserveDriftLocked("fleet", drift_->fleet, w);
}

void RoundEngine::ObserveDriftLocked(const std::string& scope, internal::DriftDetector& detector,
                                     const internal::DriftWindow& window) {
  const bool was = detector.flagged();
  const internal::DriftDetector::Change change = detector.Observe(window);
  if (change.flagged == was) return;
  const bool fleet = scope == "fleet";
  const std::string who = fleet ? "the fleet" : StrCat("device ", scope);
  absl::Status recorded;
  if (change.flagged) {
    recorded = res_->state->SetDriftFlag(
        {.scope = scope, .flagged_ms = absl::ToUnixMillis(env_.Now()), .reason = change.reason});
    base::LogEvent(spdlog::level::warn, "drift_flagged", {{fleet ? "scope" : "device", scope}},
                   fmt::format("drift flagged for {}: {}", who, change.reason));
  } else {
    recorded = res_->state->ClearDriftFlag(scope);
    base::LogEvent(spdlog::level::info, "drift_cleared", {{fleet ? "scope" : "device", scope}},
                   fmt::format("drift flag cleared for {}: its latest window matches its reference again", who));
  }
  if (!recorded.ok()) spdlog::error("drift flag for {} not recorded: {}", who, recorded.ToString());
  int flagged_devices = 0;
  for (const auto& [id, d] : drift_->devices) flagged_devices += d.flagged();
  metrics_.SetGauge("tinyfed_drift_flagged_devices", {}, flagged_devices);
  metrics_.SetGauge("tinyfed_drift_fleet_flagged", {}, drift_->fleet.flagged() ? 1.0 : 0.0);
}

}  // namespace tinyfed::aggregator
