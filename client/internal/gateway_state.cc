#include "client/internal/gateway_state.h"

#include <sodium.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/seed.h"
#include "tinyfed/client/head_trainer.h"
#include "tinyfed/models/decision_threshold.h"

namespace tinyfed::client::internal {

using absl::StrCat;

v1::RequestHeader GatewayState::Header(uint64_t round_id, v1::Phase phase) const {
  v1::RequestHeader h;
  h.set_device_id(config.device_id);
  h.set_round_id(round_id);
  h.set_phase(phase);
  return h;
}

bool GatewayState::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&stop_mu);
  return !stop_mu.AwaitWithTimeout(absl::Condition(&stopping), d);
}

bool GatewayState::stopped() {
  absl::MutexLock lock(&stop_mu);
  return stopping;
}

uint64_t GatewayState::installed_version() const {
  absl::MutexLock lock(&mu);
  return version;
}

void GatewayState::Install(models::VerifiedModel m, std::unique_ptr<models::Interpreter> in) {
  replaced.reset();
  if (version > 0 && bundle.backbone().SerializeAsString() == m.bundle.backbone().SerializeAsString()) {
    replaced = ReplacedHead{.version = version, .head = bundle.head()};
  }
  bundle = std::move(m.bundle);
  release = std::move(m.release);
  interpreter = std::move(in);
  version = release.model_version();
  model_status.clear();
  decision.reset();
  personal.reset();  // fitted again for this model
}

bool GatewayState::ServesPersonalHead() const {
  return personal && personal->served && personal->for_version == version;
}

std::vector<float> GatewayState::ServingLogits(std::span<const float> features) {
  interpreter->SetInput(features);
  interpreter->Invoke();
  if (ServesPersonalHead()) return HeadLogits(personal->head, interpreter->embedding());
  const auto logits = interpreter->logits();
  return {logits.begin(), logits.end()};
}

void GatewayState::RecordRecentCase() {
  const auto logits = interpreter->logits();
  const int label = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  float confidence = 0.0f;
  (void)models::DecideWithThreshold(logits, label, 0.0, &confidence);  // threshold 0: p is the label's
  ++recent_confidence[std::min<size_t>(recent_confidence.size() - 1, static_cast<size_t>(confidence * 10.0f))];
  recent_classes.resize(std::max(recent_classes.size(), logits.size()), 0);
  ++recent_classes[static_cast<size_t>(label)];
}

absl::StatusOr<std::pair<int, double>> GatewayState::Decision() {
  if (decision) return *decision;
  if (config.positive_class.empty()) return absl::InvalidArgumentError("no positive_class is configured");
  if (!interpreter) return absl::FailedPreconditionError("no model is installed yet");
  const auto& names = bundle.label_names();
  const auto at = std::find(names.begin(), names.end(), config.positive_class);
  if (at == names.end()) {
    return absl::NotFoundError(StrCat("positive_class '", config.positive_class, "' is not one of model v", version,
                                      "'s ", names.size(), " labels"));
  }
  const int positive = static_cast<int>(at - names.begin());
  absl::StatusOr<std::vector<Sample>> samples;
  {
    absl::MutexLock store_lock(&store_mu);
    samples = store->ReadAll();
  }
  if (!samples.ok()) return samples.status();
  std::vector<double> scores;
  for (Sample& sample : *samples) {
    if (sample.label == positive && sample.features.size() == interpreter->input_size() &&
        InHoldout(KeyOf(sample), config.holdout_fraction)) {
      const std::vector<float> logits = ServingLogits(sample.features);
      float p = 0.0f;
      (void)models::DecideWithThreshold(logits, positive, 0.0, &p);  // threshold 0: p is the positive's
      scores.push_back(p);
    }
    sodium_memzero(sample.features.data(), sample.features.size() * sizeof(float));
  }
  decision = {positive, models::ThresholdForSensitivity(scores, config.target_sensitivity)};
  return *decision;
}

absl::Status GatewayState::EnrollIfNeeded() {
  const auto marker = config.data_dir / "enrolled";
  if (config.enrollment_token.empty() || std::filesystem::exists(marker)) return absl::OkStatus();
  auto enrolled = transport->Enroll(auth::SignedEnrollRequest(config.device_id, config.enrollment_token, *device_key));
  if (!enrolled.ok()) {
    return absl::Status(enrolled.status().code(), StrCat("enrollment: ", enrolled.status().message()));
  }
  spdlog::info("{}: enrolled with the aggregator", config.device_id);
  return env.WriteFileAtomically(marker, "enrolled\n");
}

dp::Seed GatewayState::SimulationSeed(uint64_t round_id, std::string_view purpose) const {
  dp::Seed seed;
  base::DeriveSeed(*config.simulation_seed, round_id, config.device_id, purpose, seed);
  return seed;
}

std::unique_ptr<dp::SecureRandom> GatewayState::Random(uint64_t round_id, std::string_view purpose) const {
  if (config.simulation_seed) return dp::SecureRandom::FromSeed(SimulationSeed(round_id, purpose));
  dp::Seed seed;
  env.RandomBytes(seed);
  auto random = dp::SecureRandom::FromSeed(seed);
  sodium_memzero(seed.data(), seed.size());
  return random;
}

absl::Status GatewayState::SetAsideDamagedModel(const std::filesystem::path& file, const absl::Status& why) {
  const std::filesystem::path aside = file.string() + ".damaged";
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) std::filesystem::rename(file, aside, ec);
  if (ec) {
    return absl::DataLossError(StrCat(file.string(), " fails verification (", why.message(),
                                      ") and cannot be moved "
                                      "aside: ",
                                      ec.message()));
  }
  v1::SignedBundle damaged;
  auto bytes = env.ReadFile(aside, 1 << 30);
  if (bytes.ok() && damaged.ParseFromString(*bytes)) {
    if (auto claimed = models::ParseRelease(damaged.release()); claimed.ok() && claimed->model_version() > 0) {
      release = *claimed;
      release.set_model_version(claimed->model_version() - 1);
      release.set_version(claimed->version() > 0 ? claimed->version() - 1 : 0);
    }
  }
  model_status = StrCat("the installed model failed verification (", why.message(), "); set aside as ", aside.string(),
                        ", to be fetched again");
  spdlog::warn("{}: {}", config.device_id, model_status);
  return absl::OkStatus();
}

}  // namespace tinyfed::client::internal
