// Structured pruning of a float backbone: whole conv filters and dense
// units go, with every weight that reads them, so the model is smaller in
// MACs and bytes rather than zeroed; then it is fine-tuned. Before
// quantization, like distillation (distill.h).
//
//   PruneOptions options;
//   options.channel_fraction = 0.3;
//   auto report = PruneChannels(&bundle, validation, train, options);
//
// Which channels go is decided by a first-order Taylor score (Molchanov et
// al. 2019): per sample, (sum over positions of activation x loss
// gradient)^2, the loss change removing the channel would make. It is
// averaged within each class of the validation data and then across
// classes, so that a rare class weighs as much as a common one and keeps
// the channels it relies on.
#ifndef TINYFED_MODELS_PRUNE_H_
#define TINYFED_MODELS_PRUNE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

struct PruneOptions {
  // Of each prunable layer's output channels, this fraction (rounded to the
  // nearest channel, at least one kept) is removed. Prunable: a convolution
  // or dense layer whose channels reach only pools, depthwise convolutions,
  // reshapes and other convolutions or dense layers. The embedding keeps its
  // width (the federation's head reads it), and so do the inputs of an Add.
  double channel_fraction = 0.3;
  // Validation samples per class that score the channels (the first ones).
  int samples_per_class = 128;
  TrainOptions fine_tune;  // on the training data, after the channels go
};

struct PrunedLayer {
  int op = 0;
  std::string kind;  // "conv2d", "fully_connected"
  int channels_before = 0, channels_after = 0;
};

struct PruneReport {
  std::vector<PrunedLayer> layers;
  uint64_t macs_before = 0, macs_after = 0;
  uint64_t weight_bytes_before = 0, weight_bytes_after = 0;
};

// Prunes `bundle` (float32) in place, then fine-tunes it on `train`.
// INVALID_ARGUMENT if it is not float32, has nothing to prune, the data
// does not fit it or an option is out of range; the bundle is then
// unchanged.
absl::StatusOr<PruneReport> PruneChannels(v1::ModelBundle* bundle, const Dataset& validation, const Dataset& train,
                                          const PruneOptions& options);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_PRUNE_H_
