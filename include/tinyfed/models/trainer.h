// Float training of backbones (and their first head) on a workstation or the
// aggregator. Gateways never run this: they fine-tune only the head.
//
//   auto bundle = BuildBackbone(Architecture::kCnn, train, /*seed=*/1);
//   TrainOptions options;
//   options.epochs = 10;
//   if (auto s = Train(&*bundle, train, options); !s.ok()) ...
#ifndef TINYFED_MODELS_TRAINER_H_
#define TINYFED_MODELS_TRAINER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

enum class Architecture {
  kMlp,    // tabular vitals and lab values: FC layers with ReLU
  kCnn,    // low-resolution images, the NIID-Bench shape: conv 6@5x5, pool,
           // conv 16@5x5, pool, FC 120, FC 84 (SAME padding below 16x16,
           // down to 4x4)
  kDsCnn,  // keyword spotting / 1-D biosignals: conv 64@10x4 stride 2, then
           // depthwise-separable blocks, global average pool
};

absl::StatusOr<Architecture> ParseArchitecture(std::string_view name);  // "mlp", "cnn", "dscnn"
std::string ArchitectureName(Architecture architecture);

struct ArchitectureOptions {
  std::vector<int> mlp_hidden = {64, 32};  // last entry is the embedding size
  int dscnn_channels = 64;
  int dscnn_blocks = 4;
};

// A float bundle with He-initialized weights for samples shaped like `data`:
// input spec normalized with `data`'s per-channel statistics, label names and
// a training-data summary taken from it. The embedding is the last hidden
// layer; the head is a softmax layer on it.
absl::StatusOr<v1::ModelBundle> BuildBackbone(Architecture architecture, const Dataset& data, uint64_t seed,
                                              const ArchitectureOptions& options = {});

struct EpochReport {
  int epoch = 0;  // 1-based
  float loss = 0.0f;
  float train_accuracy = 0.0f;
  float learning_rate = 0.0f;
  double seconds = 0.0;
};

struct TrainOptions {
  int epochs = 10;
  int batch_size = 64;
  float learning_rate = 0.01f;  // peak; decays to 0 on a cosine schedule
  bool cosine_decay = true;     // false: constant learning rate (federated local training)
  float momentum = 0.9f;
  float weight_decay = 5e-4f;
  uint64_t seed = 1;
  std::function<void(const EpochReport&)> on_epoch;
};

// Mini-batch SGD with momentum, weight decay and softmax cross-entropy on the
// whole network (backbone and head). INVALID_ARGUMENT if the bundle is not
// float32, the data does not match its input shape or labels, or an option is
// out of range.
absl::Status Train(v1::ModelBundle* bundle, const Dataset& train, const TrainOptions& options);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_TRAINER_H_
