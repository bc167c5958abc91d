#include "tinyfed/client/head_trainer.h"

#include "absl/strings/str_cat.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::client {

absl::Status TrainHead(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels,
                       const HeadTrainingTask& task) {
  const uint32_t dim = head->in_features(), classes = head->num_classes();
  if (dim == 0 || embeddings.size() != static_cast<size_t>(dim) * labels.size() || labels.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(embeddings.size(), " embedding values for ", labels.size(), " labels of ", dim, " features each"));
  }
  // The head on an identity backbone (a reshape of the embedding onto
  // itself): the backbone trainer then trains exactly the head.
  v1::ModelBundle bundle;
  bundle.set_format_version(models::kBundleFormatVersion);
  bundle.set_precision(v1::PRECISION_FLOAT32);
  auto* graph = bundle.mutable_backbone();
  for (int i = 0; i < 2; ++i) {
    auto* t = graph->add_tensors();
    t->mutable_shape()->set_height(1);
    t->mutable_shape()->set_width(1);
    t->mutable_shape()->set_channels(dim);
  }
  graph->set_input(0);
  graph->set_output(1);
  auto* op = graph->add_ops();
  op->add_inputs(0);
  op->set_output(1);
  op->mutable_reshape();
  *bundle.mutable_input()->mutable_shape() = graph->tensors(0).shape();
  bundle.mutable_input()->add_mean(0.0f);
  bundle.mutable_input()->add_stddev(1.0f);
  *bundle.mutable_head() = *head;
  for (uint32_t c = 0; c < classes; ++c) bundle.add_label_names(std::to_string(c));

  models::Dataset data;
  data.channels = static_cast<int>(dim);
  data.features.assign(embeddings.begin(), embeddings.end());
  data.labels.assign(labels.begin(), labels.end());
  data.label_names.assign(bundle.label_names().begin(), bundle.label_names().end());
  data.source = "cached embeddings";
  for (int l : labels) {
    if (l < 0 || static_cast<uint32_t>(l) >= classes) {
      return absl::InvalidArgumentError(absl::StrCat("label ", l, " outside [0, ", classes, ")"));
    }
  }
  models::TrainOptions options;
  options.epochs = task.epochs;
  options.batch_size = task.batch_size;
  options.learning_rate = task.learning_rate;
  options.momentum = task.momentum;
  options.weight_decay = task.weight_decay;
  options.seed = task.seed;
  options.cosine_decay = task.cosine_decay;
  if (auto s = models::Train(&bundle, data, options); !s.ok()) return s;
  *head = bundle.head();
  return absl::OkStatus();
}

std::vector<float> HeadLogits(const v1::Head& head, std::span<const float> embedding) {
  const size_t dim = head.in_features();
  std::vector<float> logits(head.num_classes());
  for (size_t c = 0; c < logits.size(); ++c) {
    double z = head.bias(static_cast<int>(c));
    for (size_t d = 0; d < dim; ++d) z += double{head.weights(static_cast<int>(c * dim + d))} * embedding[d];
    logits[c] = static_cast<float>(z);
  }
  return logits;
}

std::vector<float> HeadDelta(const v1::Head& trained, const v1::Head& global) {
  std::vector<float> delta;
  delta.reserve(static_cast<size_t>(trained.weights_size() + trained.bias_size()));
  for (int i = 0; i < trained.weights_size(); ++i) delta.push_back(trained.weights(i) - global.weights(i));
  for (int i = 0; i < trained.bias_size(); ++i) delta.push_back(trained.bias(i) - global.bias(i));
  return delta;
}

}  // namespace tinyfed::client
