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

// How likely a head no better than the one it replaces may have won as
// often: chosen on validation data (clinics-fmnist at seeds 12 and 13,
// docs/gateway.md).
constexpr double kAlpha = 0.01;

// Every sample is scored once by heads fitted without it.
constexpr size_t kFolds = 5;

// Gradient steps of the bias fit. Its loss is convex; a class the clinic
// never saw has no minimum (its bias falls for ever), and the step count
// bounds how far: about log(steps) below the others.
constexpr int kBiasSteps = 500;

int Argmax(const std::vector<float>& logits) {
  return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// A candidate for the clinic's own head, fitted from the global one.
enum class Kind { kGlobal, kBiases, kWhole };

const char* NameOf(Kind k) {
  switch (k) {
    case Kind::kGlobal:
      return "the global head";
    case Kind::kBiases:
      return "the global head with the clinic's class biases";
    case Kind::kWhole:
      return "the global head fine-tuned on the clinic's samples";
  }
  return "";
}

class PersonalHeadFit {
 public:
  PersonalHeadFit(const v1::Head& global, std::vector<float> x, std::vector<int> y, HeadTrainingTask task)
      : global_(global), x_(std::move(x)), y_(std::move(y)), task_(task), dim_(global.in_features()) {}
  ~PersonalHeadFit() { sodium_memzero(x_.data(), x_.size() * sizeof(float)); }

  size_t size() const { return y_.size(); }

  // `kind` fitted on the samples whose fold is not `fold` (all of them for
  // fold kFolds); the global head is fitted on none.
  absl::StatusOr<v1::Head> Fit(Kind kind, size_t fold) const {
    if (kind == Kind::kGlobal) return global_;
    std::vector<float> x;
    std::vector<int> y;
    for (size_t i = 0; i < y_.size(); ++i) {
      if (fold != kFolds && FoldOf(i) == fold) continue;
      x.insert(x.end(), x_.begin() + i * dim_, x_.begin() + (i + 1) * dim_);
      y.push_back(y_[i]);
    }
    v1::Head head = global_;
    if (kind == Kind::kBiases) RefitClassBiases(&head, x, y);
    if (kind == Kind::kWhole && !y.empty()) TINYFED_RETURN_IF_ERROR(TrainHead(&head, x, y, task_));
    sodium_memzero(x.data(), x.size() * sizeof(float));
    return head;
  }

  // Whether each sample is answered right by `kind` fitted without its fold.
  absl::StatusOr<std::vector<bool>> CrossValidated(Kind kind) const {
    std::vector<bool> right(y_.size());
    for (size_t fold = 0; fold < kFolds; ++fold) {
      TINYFED_ASSIGN_OR_RETURN(v1::Head head, Fit(kind, fold));
      for (size_t i = 0; i < y_.size(); ++i) {
        if (FoldOf(i) == fold) right[i] = Argmax(HeadLogits(head, Row(i))) == y_[i];
      }
    }
    return right;
  }

 private:
  size_t FoldOf(size_t i) const { return (i + task_.seed) % kFolds; }
  std::span<const float> Row(size_t i) const { return {x_.data() + i * dim_, dim_}; }

  const v1::Head& global_;
  std::vector<float> x_;
  std::vector<int> y_;
  HeadTrainingTask task_;
  size_t dim_;
};

}  // namespace

void RefitClassBiases(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels) {
  const size_t dim = head->in_features(), classes = head->num_classes(), n = labels.size();
  if (n == 0 || embeddings.size() != n * dim) return;
  if (std::any_of(labels.begin(), labels.end(), [&](int y) { return y < 0 || static_cast<size_t>(y) >= classes; })) {
    return;
  }
  std::vector<float> logits(n * classes);  // without the biases, which are all that changes
  for (size_t i = 0; i < n; ++i) {
    const std::vector<float> z = HeadLogits(*head, embeddings.subspan(i * dim, dim));
    for (size_t c = 0; c < classes; ++c) logits[i * classes + c] = z[c] - head->bias(static_cast<int>(c));
  }
  std::vector<float> bias(head->bias().begin(), head->bias().end()), p(classes);
  std::vector<double> gradient(classes);
  // Full-batch gradient descent on the mean cross-entropy: its gradient is
  // at most 1/2-Lipschitz in the biases, so a step of 1 always descends.
  // Single-precision exponentials: the fit is 500 x samples x classes of
  // them, and a gateway refits after every model.
  for (int step = 0; step < kBiasSteps; ++step) {
    std::fill(gradient.begin(), gradient.end(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      const float* z = &logits[i * classes];
      float top = -INFINITY, sum = 0.0f;
      for (size_t c = 0; c < classes; ++c) top = std::max(top, z[c] + bias[c]);
      for (size_t c = 0; c < classes; ++c) sum += p[c] = std::exp(z[c] + bias[c] - top);
      for (size_t c = 0; c < classes; ++c) gradient[c] += p[c] / sum;
      gradient[static_cast<size_t>(labels[i])] -= 1.0;
    }
    for (size_t c = 0; c < classes; ++c) bias[c] -= static_cast<float>(gradient[c] / static_cast<double>(n));
  }
  for (size_t c = 0; c < classes; ++c) head->set_bias(static_cast<int>(c), bias[c]);
}

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
  // Cross-validation scores every sample, not only the held-out slice.
  samples.train.insert(samples.train.end(), samples.holdout.begin(), samples.holdout.end());
  samples.train_labels.insert(samples.train_labels.end(), samples.holdout_labels.begin(), samples.holdout_labels.end());
  const PersonalHeadFit fit(bundle.head(), std::move(samples.train), std::move(samples.train_labels), task);

  // The simplest head that no other beats beyond chance serves: the
  // biases must beat the global head, the whole fine-tuned head must beat
  // whichever of those two won.
  TINYFED_ASSIGN_OR_RETURN(const std::vector<bool> global, fit.CrossValidated(Kind::kGlobal));
  Kind chosen = Kind::kGlobal;
  std::vector<bool> best = global;
  for (Kind candidate : {Kind::kBiases, Kind::kWhole}) {
    TINYFED_ASSIGN_OR_RETURN(const std::vector<bool> right, fit.CrossValidated(candidate));
    uint32_t wins = 0, losses = 0;
    for (size_t i = 0; i < right.size(); ++i) {
      wins += right[i] && !best[i];
      losses += best[i] && !right[i];
    }
    if (PersonalHeadWins(wins, losses)) chosen = candidate, best = right;
  }
  PersonalHead p;
  p.for_version = version;
  p.samples = static_cast<uint32_t>(fit.size());
  for (size_t i = 0; i < fit.size(); ++i) {
    p.wins += best[i] && !global[i];
    p.losses += global[i] && !best[i];
  }
  if (p.samples > 0) {
    p.global_accuracy = static_cast<double>(std::count(global.begin(), global.end(), true)) / p.samples;
    p.personal_accuracy = static_cast<double>(std::count(best.begin(), best.end(), true)) / p.samples;
  }
  p.served = chosen != Kind::kGlobal;
  TINYFED_ASSIGN_OR_RETURN(p.head, fit.Fit(chosen, kFolds));  // on every sample
  absl::MutexLock lock(&g.mu);
  if (g.version != version) {  // a newer model arrived: its own head comes with it
    sodium_memzero(p.head.mutable_weights()->mutable_data(), p.head.weights_size() * sizeof(float));
    return absl::OkStatus();
  }
  spdlog::info(
      "{}: personal head for model v{}: {} ({:.2f}% against the global head's {:.2f}% on {} samples, "
      "cross-validated; {} won, {} lost)",
      g.config.device_id, version, NameOf(chosen), 100 * p.personal_accuracy, 100 * p.global_accuracy, p.samples,
      p.wins, p.losses);
  g.personal = std::move(p);
  g.decision.reset();  // the threshold follows the serving head
  return absl::OkStatus();
}

}  // namespace tinyfed::client::internal
