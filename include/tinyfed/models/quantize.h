// Float bundle -> int8 bundle, the TFLite way: symmetric per-channel int8
// weights, int32 biases at input_scale * weight_scale, asymmetric per-tensor
// int8 activations from a representative dataset. Pooling and reshape outputs
// share their input's quantization, as TFLite's int8 kernels require.
#ifndef TINYFED_MODELS_QUANTIZE_H_
#define TINYFED_MODELS_QUANTIZE_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/quantization.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

enum class Calibration {
  kMinMax,      // the observed extremes
  kPercentile,  // clip the tails: [100 - p, p] percentiles of each tensor
};

struct QuantizeOptions {
  Calibration calibration = Calibration::kMinMax;
  double percentile = 99.99;
  size_t calibration_samples = 2000;  // drawn from the dataset with `seed`
  uint64_t seed = 1;
};

// Post-training quantization. INVALID_ARGUMENT if the bundle is not float32,
// the dataset does not fit it, or an option is out of range.
absl::StatusOr<v1::ModelBundle> QuantizePostTraining(const v1::ModelBundle& float_bundle, const Dataset& calibration,
                                                     const QuantizeOptions& options);

// Quantization-aware training: calibrates as PTQ does, fine-tunes the float
// weights with fake quantization in the forward pass (straight-through
// gradients, activation ranges tracked by moving average) and converts with
// the learned ranges. For when PTQ loses accuracy.
absl::StatusOr<v1::ModelBundle> QuantizeAwareTraining(const v1::ModelBundle& float_bundle, const Dataset& train,
                                                      const QuantizeOptions& options, const TrainOptions& fine_tune);

// For a model that brings its own quantization (a QDQ-quantized ONNX file):
// each backbone tensor's scale and zero point, and per weighted op (by
// index) the weight scale of each output channel, used as they are; weights
// and biases are rounded to that grid (weights to [-128, 127], as PyTorch's
// int8 weights are). Ops without given scales are quantized as PTQ does. INVALID_ARGUMENT for a float
// bundle that is not float32, a count that does not match, a scale that is
// not positive or a zero point outside int8.
struct GivenQuantization {
  std::vector<AffineQuantization> tensors;
  std::map<int, std::vector<float>> weight_scales;
};
absl::StatusOr<v1::ModelBundle> QuantizeAsGiven(const v1::ModelBundle& float_bundle, const GivenQuantization& given);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_QUANTIZE_H_
