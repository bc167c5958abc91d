// A float bundle run as it is: what a trained or imported backbone computes
// before quantization, to check it against its source (an ONNX import
// against PyTorch's outputs). Gateways run int8 (interpreter.h).
#ifndef TINYFED_MODELS_FLOAT_MODEL_H_
#define TINYFED_MODELS_FLOAT_MODEL_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

class FloatModel {
 public:
  // INVALID_ARGUMENT for a bundle that is not float32 or fails validation.
  static absl::StatusOr<std::unique_ptr<FloatModel>> Create(const v1::ModelBundle& bundle);
  ~FloatModel();
  FloatModel(const FloatModel&) = delete;
  FloatModel& operator=(const FloatModel&) = delete;

  // The embeddings of `batch` rows of raw features (input_size() values
  // each, HWC, normalized by the bundle's input spec): batch rows of
  // embedding_size() values, in the embedding tensor's HWC order.
  std::vector<float> Embed(std::span<const float> features, int batch);
  size_t input_size() const;
  size_t embedding_size() const;

 private:
  struct Network;
  explicit FloatModel(std::unique_ptr<Network> network);
  std::unique_ptr<Network> network_;
  int embedding_tensor_ = 0;
};

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_FLOAT_MODEL_H_
