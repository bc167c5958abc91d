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
#include <Eigen/Cholesky>
#include <Eigen/Core>

namespace tinyfed::client::internal {
namespace {

// Every sample is scored once by heads fitted without it.
constexpr size_t kFolds = 5;

// The weight of the bias fit's prior, a Gaussian at the global head's
// biases. Without it a class the clinic never saw has no best bias (it falls
// for ever). With it each class's fitted share differs from its share of the
// samples by 1e-4 times how far its bias moved: an unseen class keeps a few
// in ten thousand, a seen one is as good as unchanged.
constexpr double kBiasPrior = 1e-4;
// Newton converges in about ten iterations on such losses (7 to 11 in the
// client's tests); the tolerance is on the gradient, a mean of per-sample
// probabilities.
constexpr int kBiasIterations = 100;
constexpr double kBiasTolerance = 1e-9;

// The scales RecalibrateHead tries, a factor of about 1.4 apart.
constexpr double kLogitScales[] = {0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0};

int Argmax(std::span<const float> logits) {
  return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Whether there are samples, each a row of head.in_features() finite
// values with a label among its classes.
bool FitsHead(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels) {
  const size_t classes = head.num_classes();
  return !labels.empty() && embeddings.size() == labels.size() * head.in_features() &&
         std::all_of(labels.begin(), labels.end(), [&](int y) { return y >= 0 && static_cast<size_t>(y) < classes; }) &&
         std::all_of(embeddings.begin(), embeddings.end(), [](float v) { return std::isfinite(v); });
}

v1::Head Scaled(const v1::Head& head, double scale) {
  v1::Head scaled = head;
  for (float& w : *scaled.mutable_weights()) w = static_cast<float>(w * scale);
  for (float& b : *scaled.mutable_bias()) b = static_cast<float>(b * scale);
  return scaled;
}

// Mean log-likelihood of `labels` under `head`.
double LogLikelihood(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels) {
  const size_t dim = head.in_features();
  double sum = 0.0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::vector<float> z = HeadLogits(head, embeddings.subspan(i * dim, dim));
    const float top = *std::max_element(z.begin(), z.end());
    double total = 0.0;
    for (float v : z) total += std::exp(static_cast<double>(v - top));
    sum += static_cast<double>(z[static_cast<size_t>(labels[i])] - top) - std::log(total);
  }
  return labels.empty() ? 0.0 : sum / static_cast<double>(labels.size());
}

// The global head scaled by the factor of kLogitScales under which, with
// its class biases refitted, the samples are most likely, and that factor;
// the head unchanged and a factor of 1 without samples that fit it.
struct Recalibration {
  double scale = 1.0;
  v1::Head head;
};

Recalibration Recalibrate(const v1::Head& global, std::span<const float> embeddings, std::span<const int> labels) {
  Recalibration best{.scale = 1.0, .head = global};
  if (!FitsHead(global, embeddings, labels)) return best;
  double best_likelihood = -INFINITY;
  for (double scale : kLogitScales) {
    v1::Head head = Scaled(global, scale);
    RefitClassBiases(&head, embeddings, labels);
    if (const double ll = LogLikelihood(head, embeddings, labels); ll > best_likelihood) {
      best_likelihood = ll;
      best = {.scale = scale, .head = std::move(head)};
    }
  }
  return best;
}

// A candidate for the clinic's own head, fitted from the global one.
enum class Kind { kGlobal, kRecalibrated, kFineTuned };

const char* NameOf(Kind k) {
  switch (k) {
    case Kind::kGlobal:
      return "the global head";
    case Kind::kRecalibrated:
      return "the global head recalibrated to the clinic";
    case Kind::kFineTuned:
      return "the global head fine-tuned on the clinic's samples";
  }
  return "";
}

class PersonalHeadFit {
 public:
  PersonalHeadFit(const v1::Head& global, std::vector<float> x, std::vector<int> y, HeadTrainingTask task)
      : global_(global), x_(std::move(x)), y_(std::move(y)), task_(task), dim_(global.in_features()) {
    // One scale for every fold: a single number, chosen on all samples.
    recalibrated_ = Recalibrate(global_, x_, y_);
  }
  ~PersonalHeadFit() { sodium_memzero(x_.data(), x_.size() * sizeof(float)); }

  size_t size() const { return y_.size(); }

  // `kind` fitted on the samples whose fold is not `fold` (all of them for
  // fold kFolds); the global head is fitted on none.
  absl::StatusOr<v1::Head> Fit(Kind kind, size_t fold) const {
    if (kind == Kind::kGlobal) return global_;
    if (kind == Kind::kRecalibrated && fold == kFolds) return recalibrated_.head;  // choosing the scale fitted it
    std::vector<float> x;
    std::vector<int> y;
    for (size_t i = 0; i < y_.size(); ++i) {
      if (fold != kFolds && FoldOf(i) == fold) continue;
      x.insert(x.end(), x_.begin() + i * dim_, x_.begin() + (i + 1) * dim_);
      y.push_back(y_[i]);
    }
    v1::Head head = global_;
    if (kind == Kind::kRecalibrated) {
      head = Scaled(global_, recalibrated_.scale);
      RefitClassBiases(&head, x, y);
    }
    if (kind == Kind::kFineTuned && !y.empty()) TINYFED_RETURN_IF_ERROR(TrainHead(&head, x, y, task_));
    sodium_memzero(x.data(), x.size() * sizeof(float));
    return head;
  }

  // Whether each sample is answered right by `kind` fitted without its fold.
  absl::StatusOr<std::vector<bool>> CrossValidated(Kind kind) const {
    std::vector<bool> right(y_.size());
    for (size_t fold = 0; fold < kFolds; ++fold) {
      TINYFED_ASSIGN_OR_RETURN(v1::Head head, Fit(kind, fold));
      for (size_t i = 0; i < y_.size(); ++i) {
        if (FoldOf(i) != fold) continue;
        right[i] = Argmax(HeadLogits(head, Row(i))) == y_[i];
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
  Recalibration recalibrated_;  // on every sample
};

}  // namespace

void RefitClassBiases(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels) {
  if (!FitsHead(*head, embeddings, labels)) return;
  const size_t dim = head->in_features(), classes = head->num_classes(), n = labels.size();
  // The logits without the biases, which are all that changes.
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> logits(n, classes);
  for (size_t i = 0; i < n; ++i) {
    const std::vector<float> z = HeadLogits(*head, embeddings.subspan(i * dim, dim));
    for (size_t c = 0; c < classes; ++c) logits(i, c) = z[c] - head->bias(static_cast<int>(c));
  }
  Eigen::VectorXd frequency = Eigen::VectorXd::Zero(classes);
  for (int y : labels) frequency(y) += 1.0 / static_cast<double>(n);
  const Eigen::VectorXd prior(Eigen::Map<const Eigen::VectorXf>(head->bias().data(), classes).cast<double>());
  // The mean cross-entropy plus the prior's term; its gradient, and the
  // lower triangle of its Hessian, on request.
  Eigen::VectorXd z(classes), p(classes);
  auto loss = [&](const Eigen::VectorXd& bias, Eigen::VectorXd* gradient, Eigen::MatrixXd* hessian) {
    if (gradient) *gradient = kBiasPrior * (bias - prior) - frequency;
    if (hessian) hessian->setIdentity(classes, classes) *= kBiasPrior;
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      z = logits.row(i).transpose() + bias;
      const double top = z.maxCoeff();
      p = (z.array() - top).exp();
      const double total = p.sum();
      sum += top + std::log(total) - z(labels[i]);
      p /= total;
      if (gradient) *gradient += p / static_cast<double>(n);
      if (hessian) {
        hessian->diagonal() += p / static_cast<double>(n);
        hessian->selfadjointView<Eigen::Lower>().rankUpdate(p, -1.0 / static_cast<double>(n));
      }
    }
    return sum / static_cast<double>(n) + 0.5 * kBiasPrior * (bias - prior).squaredNorm();
  };
  // Damped Newton: the loss is strictly convex; a step that does not lower
  // it is halved. LDLT reads the lower triangle only.
  Eigen::VectorXd bias = prior, gradient;
  Eigen::MatrixXd hessian;
  double value = loss(bias, &gradient, &hessian);
  for (int iteration = 0; iteration < kBiasIterations && gradient.lpNorm<Eigen::Infinity>() > kBiasTolerance;
       ++iteration) {
    const Eigen::VectorXd step = hessian.ldlt().solve(gradient);
    double t = 1.0, next = 0.0;
    while (!((next = loss(bias - t * step, nullptr, nullptr)) <= value) && t > 1e-6) t /= 2;
    if (!(next <= value)) break;  // no lower point along the step (or none a number): at the minimum to rounding
    bias -= t * step;
    value = loss(bias, &gradient, &hessian);
  }
  for (size_t c = 0; c < classes; ++c) head->set_bias(static_cast<int>(c), static_cast<float>(bias(c)));
}

v1::Head RecalibrateHead(const v1::Head& global, std::span<const float> embeddings, std::span<const int> labels) {
  return Recalibrate(global, embeddings, labels).head;
}

bool WinsBeyondChance(uint32_t wins, uint32_t losses, double level) {
  return wins > losses && models::McNemarPValue(wins, losses) <= level;
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
  // recalibrated head must beat the global head, the fine-tuned head
  // whichever of those two won.
  TINYFED_ASSIGN_OR_RETURN(const std::vector<bool> global, fit.CrossValidated(Kind::kGlobal));
  Kind chosen = Kind::kGlobal;
  std::vector<bool> best = global;
  for (Kind candidate : {Kind::kRecalibrated, Kind::kFineTuned}) {
    TINYFED_ASSIGN_OR_RETURN(const std::vector<bool> right, fit.CrossValidated(candidate));
    uint32_t wins = 0, losses = 0;
    for (size_t i = 0; i < right.size(); ++i) {
      wins += right[i] && !best[i];
      losses += best[i] && !right[i];
    }
    if (WinsBeyondChance(wins, losses, kWinLevel)) chosen = candidate, best = right;
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
