// Patient-level differential privacy at a clinic: DP-SGD (Abadi et al.
// 2016) of the classifier head on cached embeddings.
//
// Every step samples each of the clinic's samples independently with
// probability q (Poisson sampling, from the secure generator, so the
// sample stays secret and amplification by sampling holds), clips each
// sampled patient's gradient to L2 norm C, sums, adds N(0, (z C)^2) to every
// coordinate (dp::AddGaussianNoise) and divides by the expected batch size
// q n. The head is softmax regression, so a per-sample gradient is the outer
// product (p - y) [x, 1]: exact, and as cheap as the forward pass.
//
// A round of `steps` such steps is `steps` compositions of the
// Poisson-subsampled Gaussian with rate q and noise multiplier z for each
// patient, from this clinic's noise alone (dp/pld_accountant.h); whatever is
// done with the trained head afterwards (encoding, SecAgg+) is
// post-processing. Momentum and weight decay use no data and cost nothing.
//
// Class weights, when given, scale each clipped per-sample gradient by its
// class's weight over the largest weight: the clip still bounds each
// patient's contribution.
#ifndef TINYFED_CLIENT_PRIVATE_HEAD_TRAINER_H_
#define TINYFED_CLIENT_PRIVATE_HEAD_TRAINER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "tinyfed/dp/secure_random.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::client {

struct PrivateTrainingTask {
  double sampling_rate = 0.1;     // q, in (0, 1]
  double noise_multiplier = 1.0;  // z > 0
  double clip = 1.0;              // C > 0, per sample
  int64_t steps = 10;
  float learning_rate = 0.1f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
  // One per class, or empty for all 1. Must not depend on the clinic's data
  // (the aggregator sends them), or they would leak it.
  std::vector<float> class_weights;
};

// Trains `head` in place. INVALID_ARGUMENT for mismatched sizes, labels out
// of range, settings out of range or a malformed head; the head is
// unchanged then.
absl::Status TrainHeadPrivately(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels,
                                const PrivateTrainingTask& task, dp::SecureRandom& rng);

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_PRIVATE_HEAD_TRAINER_H_
