// Converting one ONNX graph into a float bundle (onnx_import.h): the graph
// input, each node in order (onnx_ops.cc), then the head after the embedding.
#ifndef TINYFED_MODEL_IMPORT_INTERNAL_ONNX_CONVERTER_H_
#define TINYFED_MODEL_IMPORT_INTERNAL_ONNX_CONVERTER_H_

#include <onnx/onnx_pb.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model_import/internal/onnx_parts.h"
#include "tinyfed/model_import/onnx_import.h"
#include "tinyfed/models/quantization.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::model_import::internal {

// A converted value: a tinyfed tensor holding an ONNX tensor. Spatial values
// are NCHW in ONNX and HWC here; a value flattened from a spatial one keeps
// its source dims, so that a Gemm reading it can reorder its weights.
struct Value {
  int tensor = -1;
  int c = 1, h = 1, w = 1;
  bool spatial = false;
  int producer = -1;       // tinyfed op index, -1 for the graph input
  bool chw_order = false;  // flat, in ONNX's C, H, W order of (c, h, w)
  // Zeros a Pad put around the map, in ONNX's order (top, left, bottom,
  // right): not materialized, the Conv reading it pads by as much more.
  std::array<int64_t, 4> pads = {0, 0, 0, 0};
  bool padded() const { return pads != std::array<int64_t, 4>{0, 0, 0, 0}; }
};

class OnnxConverter {
 public:
  OnnxConverter(const onnx::ModelProto& model, std::string source, const OnnxImportOptions& options);
  absl::StatusOr<v1::ModelBundle> Convert();

 private:
  // Steps of Convert().
  absl::Status CheckOptions() const;
  // The one graph input that is not a weight: NCHW or N x D, batch 1 or symbolic.
  absl::Status DefineInput();
  void CountUses();
  absl::Status ConvertNode(const onnx::NodeProto& node);
  // What follows the embedding: one Gemm or MatMul (+Add) (+Softmax) is the
  // initial head, anything else leaves it at zero.
  absl::Status BuildHead(const Value& embedding, int next);
  void Finish();

  // One node each (onnx_ops.cc).
  absl::Status Conv(const onnx::NodeProto& node);
  absl::Status BatchNorm(const onnx::NodeProto& node);
  absl::Status Activation(const onnx::NodeProto& node);
  absl::Status Pool(const onnx::NodeProto& node);
  absl::Status GlobalPool(const onnx::NodeProto& node);
  absl::Status AddOp(const onnx::NodeProto& node);
  // Along channels only, of activations (a Concat of constants is folded).
  absl::Status ConcatOp(const onnx::NodeProto& node);
  // Flatten(axis 1) or Reshape to [N, -1]: the same values in a row, read
  // by a Gemm in ONNX's C, H, W order (its weights are reordered for it).
  absl::Status FlattenOp(const onnx::NodeProto& node);
  absl::Status Dense(const onnx::NodeProto& node);
  // A constant zero Pad of H and W: taken into the Conv that reads it.
  absl::Status PadOp(const onnx::NodeProto& node);
  // Shape of a converted value, and nodes whose inputs are all constants
  // (onnx_constants.h): constants for the nodes that read them.
  absl::Status ShapeOp(const onnx::NodeProto& node);
  absl::Status Fold(const onnx::NodeProto& node);
  // A QDQ export: QuantizeLinear on an activation gives its tensor's scale
  // and zero point (uint8 ones shifted to int8); DequantizeLinear and Cast
  // of an activation pass it on. Convert() then quantizes to exactly those.
  absl::Status QuantizeOp(const onnx::NodeProto& node);
  void RememberWeightScales(const onnx::NodeProto& node, int op, int channels);
  absl::StatusOr<v1::ModelBundle> QuantizeAsTheFileSays() const;
  bool AllInputsConstant(const onnx::NodeProto& node) const;

  // Gemm (alpha = beta = 1) or MatMul, with a following Add of a bias fused.
  struct DenseWeights {
    int out = 0, in = 0;
    std::vector<float> w;  // out x in, row-major, in tinyfed's input order
    std::vector<float> bias;
  };
  absl::StatusOr<DenseWeights> DenseOf(const onnx::NodeProto& node, const Value& in) const;
  // The producer of `v` may take `node` into itself: no activation yet, and
  // `node` is the only reader of its output.
  absl::StatusOr<v1::Op*> Fusable(const onnx::NodeProto& node, const Value& v);

  // The value a node reads as input i (refused if a Pad is pending on it,
  // unless `padded_ok`), and a weight it reads as input i.
  absl::StatusOr<Value> Input(const onnx::NodeProto& node, int i, bool padded_ok = false) const;
  absl::StatusOr<const Initializer*> Weight(const onnx::NodeProto& node, int i) const;
  // "FILE: node 'NAME' (OP, opset N)", and an error about the node.
  std::string Where(const onnx::NodeProto& node) const;
  absl::Status Unsupported(const onnx::NodeProto& node, const std::string& why) const;
  std::string LastOutputs() const;  // for a message naming candidates

  // A new tensor and op of the bundle's backbone.
  int Tensor(int h, int w, int c);
  v1::Op* Op(int in, int out);

  const onnx::ModelProto& model_;
  const onnx::GraphProto& graph_;
  const std::string source_;
  const OnnxImportOptions& options_;
  int64_t opset_ = 0;
  std::map<std::string, Initializer> initializers_;  // weights and folded constants
  uint64_t constant_values_ = 0;
  std::map<std::string, Value> values_;
  std::map<std::string, int> uses_;
  std::map<std::string, int> pending_bias_;                            // MatMul outputs awaiting their Add
  std::map<std::string, std::vector<float>> dequantized_scales_;       // weights from a DequantizeLinear
  std::map<int, models::AffineQuantization> activation_quantization_;  // by tinyfed tensor
  std::map<int, std::vector<float>> weight_scales_;                    // by tinyfed op, per channel
  v1::ModelBundle bundle_;
};

}  // namespace tinyfed::model_import::internal

#endif  // TINYFED_MODEL_IMPORT_INTERNAL_ONNX_CONVERTER_H_
