#include "client/internal/personal_head.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "client/internal/local_training.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/client/head_trainer.h"
#include "tinyfed/models/evaluate.h"

namespace tinyfed::client::internal {
namespace {

// How likely a head no better than the global one may have won as often:
// chosen on validation data (clinics-fmnist at seed 12, docs/gateway.md)
// as the most cautious of 0.05, 0.2, 0.35 and 0.5 whose served heads were
// on average at least as good as the clinics' local-only heads.
constexpr double kAlpha = 0.35;

int Argmax(const std::vector<float>& logits) {
  return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

}  // namespace

bool PersonalHeadWins(uint32_t wins, uint32_t losses) {
  return wins > losses && models::McNemarPValue(wins, losses) <= kAlpha;
}

absl::Status RefreshPersonalHead(GatewayState& g) {
  if (g.config.personal_head_epochs <= 0) return absl::OkStatus();
  v1::ModelBundle bundle;
  uint64_t version = 0;
  HeadTrainingTask task;  // the federation's last training settings, or the defaults
  {
    absl::MutexLock lock(&g.mu);
    if (!g.interpreter) return absl::OkStatus();
    bundle = g.bundle;
    version = g.version;
    if (g.training) {
      task.batch_size = static_cast<int>(g.training->batch_size());
      task.learning_rate = g.training->learning_rate();
      task.momentum = g.training->momentum();
      task.weight_decay = g.training->weight_decay();
    }
  }
  task.epochs = g.config.personal_head_epochs;
  task.seed = version ^ std::hash<std::string>()(g.config.device_id);
  task.cosine_decay = true;
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<models::Interpreter> interpreter, models::Interpreter::Create(bundle));
  TINYFED_ASSIGN_OR_RETURN(EmbeddedSamples samples, EmbedStoredSamples(g, bundle, *interpreter));
  PersonalHead p;
  p.for_version = version;
  p.head = bundle.head();
  if (!samples.train_labels.empty())
    TINYFED_RETURN_IF_ERROR(TrainHead(&p.head, samples.train, samples.train_labels, task));
  const size_t dim = bundle.head().in_features();
  uint32_t global_right = 0, personal_right = 0;
  for (size_t i = 0; i < samples.holdout_labels.size(); ++i) {
    const std::span<const float> e(samples.holdout.data() + i * dim, dim);
    const bool global = Argmax(HeadLogits(bundle.head(), e)) == samples.holdout_labels[i];
    const bool personal = Argmax(HeadLogits(p.head, e)) == samples.holdout_labels[i];
    global_right += global;
    personal_right += personal;
    p.wins += personal && !global;
    p.losses += global && !personal;
  }
  p.holdout = static_cast<uint32_t>(samples.holdout_labels.size());
  if (p.holdout > 0) {
    p.global_accuracy = static_cast<double>(global_right) / p.holdout;
    p.personal_accuracy = static_cast<double>(personal_right) / p.holdout;
  }
  p.served = PersonalHeadWins(p.wins, p.losses);
  if (p.served && !samples.holdout_labels.empty()) {
    // Chosen on the held-out samples, the head that serves then learns
    // from them too: fitted again from the global head on every sample.
    samples.train.insert(samples.train.end(), samples.holdout.begin(), samples.holdout.end());
    samples.train_labels.insert(samples.train_labels.end(), samples.holdout_labels.begin(),
                                samples.holdout_labels.end());
    p.head = bundle.head();
    TINYFED_RETURN_IF_ERROR(TrainHead(&p.head, samples.train, samples.train_labels, task));
  }
  absl::MutexLock lock(&g.mu);
  if (g.version != version) {  // a newer model arrived: its own head comes with it
    sodium_memzero(p.head.mutable_weights()->mutable_data(), p.head.weights_size() * sizeof(float));
    return absl::OkStatus();
  }
  spdlog::info(
      "{}: personal head for model v{}: {:.2f}% against the global head's {:.2f}% on {} held-out samples "
      "({} won, {} lost): {}",
      g.config.device_id, version, 100 * p.personal_accuracy, 100 * p.global_accuracy, p.holdout, p.wins, p.losses,
      p.served ? "serving it" : "serving the global head");
  g.personal = std::move(p);
  g.decision.reset();  // the threshold follows the serving head
  return absl::OkStatus();
}

}  // namespace tinyfed::client::internal
