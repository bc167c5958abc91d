#include "client/internal/local_training.h"

#include <sodium.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/client/embedding_cache.h"
#include "tinyfed/client/head_trainer.h"
#include "tinyfed/client/private_head_trainer.h"

namespace tinyfed::client::internal {
namespace {

using absl::StrCat;

void WipeSamples(std::vector<Sample>& samples) {
  for (Sample& x : samples) sodium_memzero(x.features.data(), x.features.size() * sizeof(float));
}

}  // namespace

EmbeddedSamples::~EmbeddedSamples() {
  for (auto* v : {&train, &holdout}) sodium_memzero(v->data(), v->size() * sizeof(float));
}

absl::StatusOr<EmbeddedSamples> EmbedStoredSamples(GatewayState& g, const v1::ModelBundle& bundle,
                                                   models::Interpreter& interpreter) {
  absl::StatusOr<std::vector<Sample>> samples;
  {
    absl::MutexLock lock(&g.store_mu);
    samples = g.store->ReadAll();
  }
  if (!samples.ok()) return samples.status();
  // Decrypted samples and what is derived from them stay in memory only
  // as long as needed, and are wiped, not just freed.
  std::vector<Sample> train, holdout;
  struct Wipe {
    std::vector<Sample>& all;
    std::vector<Sample>& train;
    std::vector<Sample>& holdout;
    ~Wipe() {
      for (auto* v : {&all, &train, &holdout}) WipeSamples(*v);
    }
  } wipe{*samples, train, holdout};
  EmbeddedSamples out;
  out.stored = samples->size();
  for (auto& sample : *samples) {
    if (sample.features.size() != interpreter.input_size() || sample.label < 0 ||
        sample.label >= interpreter.num_classes()) {
      ++out.foreign;  // stored for another model
    } else {
      (InHoldout(KeyOf(sample), g.config.holdout_fraction) ? holdout : train).push_back(std::move(sample));
    }
  }
  EmbeddingCache cache = [&] {
    absl::MutexLock lock(&g.store_mu);
    return EmbeddingCache::Load(*g.store, BackboneId(bundle));
  }();
  out.train = cache.Embed(train, interpreter);
  out.holdout = cache.Embed(holdout, interpreter);
  if (cache.computed() > 0) {
    absl::MutexLock lock(&g.store_mu);
    TINYFED_RETURN_IF_ERROR(cache.Save(*g.store));
  }
  for (const Sample& x : train) out.train_labels.push_back(x.label);
  for (const Sample& x : holdout) out.holdout_labels.push_back(x.label);
  return out;
}

absl::StatusOr<LocalUpdate> TrainOnLocalSamples(GatewayState& g, const v1::RoundTask& task, RoundReport* report) {
  v1::ModelBundle bundle;
  uint64_t version = 0;
  {
    absl::MutexLock lock(&g.mu);
    if (!g.interpreter) return LocalUpdate{.delta = {}, .skipped = "no model is installed"};
    bundle = g.bundle;
    version = g.version;
  }
  // Its own interpreter: the installed one keeps serving Predict meanwhile.
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<models::Interpreter> interpreter, models::Interpreter::Create(bundle));
  absl::Time start = absl::Now();
  absl::StatusOr<EmbeddedSamples> samples = EmbedStoredSamples(g, bundle, *interpreter);
  if (!samples.ok()) {
    return LocalUpdate{.delta = {}, .skipped = StrCat("the sample store: ", samples.status().message())};
  }
  if (samples->train_labels.empty()) {
    return LocalUpdate{.delta = {},
                       .skipped = StrCat("no samples to train on: ", samples->stored, " stored, ", samples->foreign,
                                         " with features or labels model v", version, " does not take, ",
                                         samples->holdout_labels.size(), " held out")};
  }
  report->timings.backbone = absl::Now() - start;
  const std::vector<float>& embeddings = samples->train;
  const std::vector<int>& labels = samples->train_labels;
  report->samples_trained = labels.size();

  start = absl::Now();
  const auto& t = task.training();
  v1::Head head = bundle.head();
  absl::Status trained;
  if (task.has_patient_dp()) {
    const auto& p = task.patient_dp();
    PrivateTrainingTask private_task{.sampling_rate = p.sampling_rate(),
                                     .noise_multiplier = p.noise_multiplier(),
                                     .clip = p.clip(),
                                     .steps = static_cast<int64_t>(p.steps()),
                                     .learning_rate = t.learning_rate(),
                                     .momentum = t.momentum(),
                                     .weight_decay = t.weight_decay(),
                                     .class_weights = {t.class_weights().begin(), t.class_weights().end()}};
    trained = TrainHeadPrivately(&head, embeddings, labels, private_task, *g.Random(task.round_id(), "dp-sgd"));
  } else {
    HeadTrainingTask training{.epochs = static_cast<int>(t.epochs()),
                              .batch_size = static_cast<int>(t.batch_size()),
                              .learning_rate = t.learning_rate(),
                              .momentum = t.momentum(),
                              .weight_decay = t.weight_decay(),
                              .seed = t.seed() ^ std::hash<std::string>()(g.config.device_id),
                              .cosine_decay = false};
    trained = TrainHead(&head, embeddings, labels, training);
  }
  if (!trained.ok()) return LocalUpdate{.delta = {}, .skipped = StrCat("training failed: ", trained.message())};
  std::vector<float> delta = HeadDelta(head, bundle.head());
  sodium_memzero(head.mutable_weights()->mutable_data(), head.weights_size() * sizeof(float));
  sodium_memzero(head.mutable_bias()->mutable_data(), head.bias_size() * sizeof(float));
  report->timings.training = absl::Now() - start;
  return LocalUpdate{.delta = std::move(delta), .skipped = ""};
}

}  // namespace tinyfed::client::internal
