#include "tinyfed/client/client.h"

#include <sodium.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "client/internal/client_round.h"
#include "client/internal/gateway_state.h"
#include "client/internal/model_download.h"
#include "client/internal/personal_head.h"
#include "client/internal/telemetry.h"
#include "client/internal/trust_store.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/decision_threshold.h"
#include "tinyfed/proto/device_id.h"

namespace tinyfed::client {

using absl::StrCat;

namespace {
// Predictions whose features are kept for Confirm.
constexpr size_t kPendingPredictions = 1024;
}  // namespace

Client::Client(std::unique_ptr<internal::GatewayState> state) : state_(std::move(state)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientConfig& config, std::unique_ptr<Transport> transport,
                                                       ClientHooks hooks, base::Env& env) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  if (!proto::IsValidDeviceId(config.device_id)) {
    return absl::InvalidArgumentError(
        StrCat("device id '", config.device_id, "' must be 1 to 64 letters, digits, '.', '_' or '-'"));
  }
  if (!(config.holdout_fraction >= 0.0 && config.holdout_fraction < 1.0)) {
    return absl::InvalidArgumentError(StrCat("holdout fraction must be in [0, 1), got ", config.holdout_fraction));
  }
  if (!transport) return absl::InvalidArgumentError("a client needs a transport");
  auto state = std::make_unique<internal::GatewayState>(env);
  auto data_dir_lock = models::DirectoryLock::Acquire(config.data_dir, StrCat("tinyfed client ", config.device_id));
  if (!data_dir_lock.ok()) return data_dir_lock.status();
  state->data_dir_lock = std::move(*data_dir_lock);
  state->config = config;
  state->hooks = std::move(hooks);
  state->transport = std::move(transport);
  TINYFED_ASSIGN_OR_RETURN(std::vector<models::TrustedRoot> history, internal::LoadTrustChain(config, env));
  {
    absl::MutexLock lock(&state->round_mu);
    state->trusted.emplace(history.back());
  }
  // The device key: made at first start, never leaves the gateway. Made
  // again only to enroll again: the aggregator knows the old one.
  const auto key_file = config.data_dir / "device_signing.key";
  const auto enrolled_marker = config.data_dir / "enrolled";
  if (!std::filesystem::exists(key_file)) {
    std::error_code ec;
    if (std::filesystem::exists(enrolled_marker, ec)) {
      if (config.enrollment_token.empty()) {
        return absl::FailedPreconditionError(StrCat(
            key_file.string(), " is missing, but this gateway enrolled as ", config.device_id,
            ": without its key the aggregator refuses every request. Re-enroll: the operator issues a token for it "
            "(tinyfed enroll --device-id ",
            config.device_id, "), which the gateway is started with (--enroll-token)"));
      }
      spdlog::warn("{}: {} is missing; making a new device key and enrolling again with the given token",
                   config.device_id, key_file.string());
      std::filesystem::remove(enrolled_marker, ec);
    }
    std::filesystem::create_directories(config.data_dir, ec);
    if (auto s = models::WriteSigningKey(models::SigningKey::Generate(), key_file,
                                         config.data_dir / "device_signing.pub", env);
        !s.ok()) {
      return s;
    }
  }
  auto key = models::ReadSigningKey(key_file, env);
  if (!key.ok()) return key.status();
  state->device_key = std::make_shared<const models::SigningKey>(std::move(*key));
  state->transport->SetDeviceKey(state->device_key);
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<SampleStore> store,
                           SampleStore::Open(config.data_dir / "store", config.max_samples, env));
  auto ledger = dp::PrivacyLedger::Open(config.data_dir / "privacy.db", config.privacy_budget);
  if (!ledger.ok()) return ledger.status();
  state->ledger = std::move(*ledger);
  {
    absl::MutexLock lock(&state->store_mu);
    state->store = std::move(store);
  }
  {
    absl::MutexLock lock(&state->mu);
    TINYFED_RETURN_IF_ERROR(internal::LoadInstalledModel(*state, history));
  }
  if (absl::Status fitted = internal::RefreshPersonalHead(*state); !fitted.ok()) {
    spdlog::warn("{}: no personal head for the installed model: {}", config.device_id, fitted.ToString());
  }
  return std::unique_ptr<Client>(new Client(std::move(state)));
}

absl::Status Client::AddSamples(std::span<const Sample> samples) {
  absl::MutexLock lock(&state_->mu);
  if (state_->interpreter) {
    for (const Sample& s : samples) {
      if (s.features.size() != state_->interpreter->input_size()) {
        return absl::InvalidArgumentError(StrCat("a sample has ", s.features.size(), " features; the model takes ",
                                                 state_->interpreter->input_size()));
      }
      if (s.label < 0 || s.label >= state_->interpreter->num_classes()) {
        return absl::InvalidArgumentError(
            StrCat("label ", s.label, " is outside the model's ", state_->interpreter->num_classes(), " classes"));
      }
    }
  }
  state_->decision.reset();
  absl::MutexLock store_lock(&state_->store_mu);
  return state_->store->Add(samples);
}

absl::StatusOr<double> Client::DecisionThreshold() {
  absl::MutexLock lock(&state_->mu);
  TINYFED_ASSIGN_OR_RETURN(auto decision, state_->Decision());
  return decision.second;
}

absl::StatusOr<Prediction> Client::Predict(std::span<const float> features) {
  internal::GatewayState& g = *state_;
  absl::MutexLock lock(&g.mu);
  models::Interpreter* interpreter = g.interpreter.get();
  if (!interpreter) return absl::FailedPreconditionError("no model is installed yet");
  if (features.size() != interpreter->input_size()) {
    return absl::InvalidArgumentError(
        StrCat("got ", features.size(), " features; the model takes ", interpreter->input_size()));
  }
  std::optional<std::pair<int, double>> decision;
  if (!g.config.positive_class.empty()) {
    TINYFED_ASSIGN_OR_RETURN(decision, g.Decision());
  }
  const std::vector<float> logits = g.ServingLogits(features);
  g.RecordRecentCase();
  Prediction p;
  p.id = ++g.predictions;
  p.head = g.ServesPersonalHead() ? Head::kPersonal : Head::kGlobal;
  if (decision) {
    p.label = models::DecideWithThreshold(logits, decision->first, decision->second, &p.confidence);
  } else {
    p.label = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    (void)models::DecideWithThreshold(logits, p.label, 0.0, &p.confidence);  // threshold 0: p is the label's
  }
  g.pending.push_back({.id = p.id, .features = {features.begin(), features.end()}, .label = p.label});
  while (g.pending.size() > kPendingPredictions) {
    sodium_memzero(g.pending.front().features.data(), g.pending.front().features.size() * sizeof(float));
    g.pending.pop_front();
  }
  return p;
}

absl::Status Client::Confirm(uint64_t prediction_id, int label) {
  internal::GatewayState& g = *state_;
  Sample sample;
  {
    absl::MutexLock lock(&g.mu);
    if (label < 0 || !g.interpreter || label >= g.interpreter->num_classes()) {
      return absl::InvalidArgumentError(StrCat("label ", label, " is not one of the model's ",
                                               g.interpreter ? g.interpreter->num_classes() : 0, " classes"));
    }
    const auto it = std::find_if(g.pending.begin(), g.pending.end(),
                                 [&](const internal::PendingPrediction& p) { return p.id == prediction_id; });
    if (it == g.pending.end()) {
      return absl::NotFoundError(StrCat("prediction ", prediction_id, " is not among the last ", kPendingPredictions,
                                        " predictions awaiting an answer"));
    }
    ++g.confirmations;
    g.overrides += it->label != label;
    sample.features = std::move(it->features);
    sample.label = label;
    g.pending.erase(it);
  }
  absl::Status added = AddSamples({&sample, 1});
  sodium_memzero(sample.features.data(), sample.features.size() * sizeof(float));
  return added;
}

uint64_t Client::model_version() const { return state_->installed_version(); }

size_t Client::sample_count() const {
  absl::MutexLock lock(&state_->store_mu);
  return state_->store->size();
}

void Client::Stop() {
  absl::MutexLock lock(&state_->stop_mu);
  state_->stopping = true;
}

absl::StatusOr<RoundReport> Client::ParticipateOnce() { return internal::ClientRound(*state_).Run(); }

absl::Status Client::Run(int64_t max_completed_rounds) {
  internal::GatewayState& s = *state_;
  int64_t completed = 0;
  uint64_t reported_version = s.installed_version();
  absl::Duration backoff = absl::Seconds(1);
  while (!s.stopped()) {
    auto report = ParticipateOnce();
    if (!report.ok()) {
      if (absl::IsCancelled(report.status())) break;
      // A revoked device is shut out for good, and one whose key the
      // aggregator does not know (lost, or never enrolled) until it
      // re-enrolls; anything else may pass.
      if (absl::IsPermissionDenied(report.status())) return report.status();
      if (absl::IsUnauthenticated(report.status())) {
        return absl::UnauthenticatedError(
            StrCat(report.status().message(),
                   " (the aggregator refuses this gateway's signed requests: if their timestamp is "
                   "off, set the gateway's clock; if it lost its data directory or key, re-enroll it with a token from "
                   "tinyfed enroll --device-id ",
                   s.config.device_id, ")"));
      }
      spdlog::warn("{}: round attempt failed: {} (retrying in {})", s.config.device_id, report.status().ToString(),
                   absl::FormatDuration(backoff));
      if (!s.SleepFor(backoff)) break;
      // Capped low: an aggregator back from a restart should see its
      // gateways within seconds, not minutes.
      backoff = std::min(backoff * 2, absl::Seconds(10));
      continue;
    }
    backoff = absl::Seconds(1);
    if (report->outcome == RoundOutcome::kCompleted) {
      ++completed;
      spdlog::info("{}: round {} completed on {} samples; model v{}", s.config.device_id, report->round_id,
                   report->samples_trained, report->model_version);
    } else if (report->outcome != RoundOutcome::kNotSelected) {
      spdlog::info("{}: round {}: {}", s.config.device_id, report->round_id, report->detail);
    }
    // After a round, and after any model installed on a check-in: the
    // aggregator's canary rollout waits for reports on a new model.
    if (report->outcome == RoundOutcome::kCompleted || report->outcome == RoundOutcome::kSkipped ||
        s.installed_version() != reported_version) {
      reported_version = s.installed_version();
      // Telemetry is best effort: the next round sends it again.
      if (auto sent = SendTelemetry(); !sent.ok()) {
        spdlog::info("{}: telemetry not sent: {}", s.config.device_id, sent.ToString());
      }
    }
    if (report->outcome == RoundOutcome::kClosed) return absl::OkStatus();
    if (max_completed_rounds > 0 && completed >= max_completed_rounds) return absl::OkStatus();
    const absl::Duration pause = std::max(report->retry_after, absl::Milliseconds(50));
    if (!s.SleepFor(pause)) break;
  }
  return absl::OkStatus();
}

absl::Status Client::SendTelemetry() {
  v1::TelemetryRequest request;
  *request.mutable_header() = state_->Header(0, v1::PHASE_TELEMETRY);
  TINYFED_ASSIGN_OR_RETURN(*request.mutable_telemetry(), internal::CollectTelemetry(*state_));
  TINYFED_RETURN_IF_ERROR(state_->transport->ReportTelemetry(request).status());
  internal::ForgetReportedCases(*state_, request.telemetry());
  return absl::OkStatus();
}

}  // namespace tinyfed::client
