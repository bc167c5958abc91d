// Local training of the classifier head on cached embeddings: the backbone
// stays frozen, so a gateway trains only num_classes x (dim + 1) numbers.
// Uses the same SGD, momentum, weight decay and softmax cross-entropy as the
// backbone trainer (models/trainer.h).
#ifndef TINYFED_CLIENT_HEAD_TRAINER_H_
#define TINYFED_CLIENT_HEAD_TRAINER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::client {

// Hyper-parameters the aggregator sends with each round.
struct HeadTrainingTask {
  int epochs = 5;
  int batch_size = 32;
  float learning_rate = 0.1f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
  uint64_t seed = 1;
  // Decay the learning rate to 0 on a cosine schedule (for training a head
  // to convergence, as the simulator's baselines do); rounds use a constant rate.
  bool cosine_decay = false;
};

// Trains `head` in place on `embeddings` (rows of head->in_features()) with
// `labels` in [0, num_classes). INVALID_ARGUMENT for mismatched sizes, labels
// out of range, or a head that fails validation; the head is unchanged then.
absl::Status TrainHead(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels,
                       const HeadTrainingTask& task);

// The head's logits for one embedding of head.in_features() values.
std::vector<float> HeadLogits(const v1::Head& head, std::span<const float> embedding);

// trained - global, flattened as weights (row-major) then bias: the update a
// client encodes. Sizes must match.
std::vector<float> HeadDelta(const v1::Head& trained, const v1::Head& global);

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_HEAD_TRAINER_H_
