// The float twin of the int8 interpreter: runs a float bundle's backbone and
// head on mini-batches, forward and backward, for training, calibration and
// float evaluation. Ops mirror the int8 kernels exactly (same padding, same
// pooling windows that skip padding), so the quantized model computes the
// function that was trained.
//
// Quantization-aware training: EnableFakeQuantization() makes every forward
// pass round weights per channel and activations per tensor to the int8 grid
// (straight-through gradients, zero outside the clamp range), and tracks
// activation ranges by exponential moving average.
#ifndef TINYFED_MODELS_INTERNAL_FLOAT_NETWORK_H_
#define TINYFED_MODELS_INTERNAL_FLOAT_NETWORK_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "models/internal/graph.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models::internal {

struct Range {
  float min = 0.0f;
  float max = 0.0f;
};

class FloatNetwork {
 public:
  // The bundle must be float32 and valid.
  static absl::StatusOr<FloatNetwork> Create(const v1::ModelBundle& bundle);

  // Runs raw features (batch rows of input_size() values) through the backbone
  // and the head. Activations of every tensor stay available until the next call.
  void Forward(std::span<const float> raw_features, int batch);
  // Softmax cross-entropy on the last Forward(); accumulates gradients and
  // returns the mean loss.
  float Backward(std::span<const int> labels);
  // Backpropagates any loss given its gradient with respect to the last
  // Forward()'s logits (batch rows of num_classes()), accumulating gradients.
  void BackwardFrom(std::span<const float> grad_logits);
  // SGD with momentum and L2 weight decay on all parameters, then clears gradients.
  void Step(float learning_rate, float momentum, float weight_decay);

  std::span<const float> logits() const { return logits_; }
  // Rows of `batch` activations of tensor t from the last Forward().
  std::span<const float> activations(int tensor) const { return acts_[static_cast<size_t>(tensor)]; }
  // Rows of `batch` loss gradients at tensor t from the last Backward();
  // for an op's output, taken back through its fused activation.
  std::span<const float> gradients(int tensor) const { return grads_[static_cast<size_t>(tensor)]; }
  int num_tensors() const { return static_cast<int>(acts_.size()); }
  int batch() const { return batch_; }
  size_t input_size() const { return input_size_; }
  int num_classes() const { return num_classes_; }

  // For each tensor, the tensor whose quantization it must share (itself,
  // or the input of a pooling or reshape op).
  const std::vector<int>& quantization_source() const { return quant_source_; }

  // Fake quantization with the given starting activation ranges (one per
  // tensor; entries for tied tensors are ignored).
  void EnableFakeQuantization(std::vector<Range> ranges);
  const std::vector<Range>& ranges() const { return ranges_; }

  // Writes trained weights back into a float bundle of the same graph.
  void WriteTo(v1::ModelBundle* bundle) const;

 private:
  struct Params {
    std::vector<float> w, b, dw, db, vw, vb;
    std::vector<float> w_used;  // fake-quantized copy in QAT, else unused
  };
  FloatNetwork() = default;
  const std::vector<float>& Weights(const Params& p) const { return fake_quant_ ? p.w_used : p.w; }
  void ForwardOp(size_t i);
  void BackwardOp(size_t i);
  void Activate(size_t i);
  void FakeQuantize(int tensor);

  GraphAnalysis analysis_;
  std::vector<v1::Activation> activation_;
  std::vector<Params> params_;  // per op
  Params head_;
  std::vector<float> mean_, inv_std_;
  size_t input_size_ = 0;
  int input_channels_ = 1;
  int input_tensor_ = 0, output_tensor_ = 0;
  int num_classes_ = 0;
  int batch_ = 0;
  std::vector<std::vector<float>> acts_, grads_;
  std::vector<std::vector<float>> patches_;      // conv im2col per op
  std::vector<std::vector<int32_t>> argmax_;     // max pool per op
  std::vector<std::vector<float>> pool_counts_;  // average pool window sizes per op
  std::vector<std::vector<uint8_t>> pass_;       // fake-quant straight-through masks per tensor
  std::vector<float> logits_, grad_logits_;
  std::vector<int> quant_source_;
  bool fake_quant_ = false;
  std::vector<Range> ranges_;
};

// INVALID_ARGUMENT unless the data's sample size and class count match.
absl::Status CheckDataFits(const FloatNetwork& net, const Dataset& data);

// A training loss: for a mini-batch of the dataset's `rows` and the
// network's `logits` for them, the gradient of the mean loss with respect
// to the logits into `grad_logits`; returns the mean loss.
using Objective =
    std::function<float(std::span<const size_t> rows, std::span<const float> logits, std::span<float> grad_logits)>;

// The SGD loop behind Train(), quantization-aware fine-tuning and
// distillation: softmax cross-entropy on the labels unless an objective is
// given.
absl::Status TrainNetwork(FloatNetwork* net, const Dataset& train, const TrainOptions& options,
                          const Objective& objective = {});

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_FLOAT_NETWORK_H_
