// Constant folding of the small shape computations exporters write: PyTorch
// computes a ZeroPad2d's pads with ConstantOfShape, Concat, Reshape, Slice,
// Transpose and Cast, and `x.view(x.size(0), -1)` with Shape, Gather,
// Unsqueeze and Concat. A node whose inputs are all constants is evaluated
// here, so the converter sees one constant where the file has a chain.
#ifndef TINYFED_MODEL_IMPORT_INTERNAL_ONNX_CONSTANTS_H_
#define TINYFED_MODEL_IMPORT_INTERNAL_ONNX_CONSTANTS_H_

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model_import/internal/onnx_parts.h"

namespace tinyfed::model_import::internal {

// Whether `op_type` is one FoldConstant evaluates.
bool IsFoldable(const std::string& op_type);

// The output of `node` (Constant, ConstantOfShape, Concat, Reshape, Slice,
// Transpose, Cast, Unsqueeze, Squeeze, Gather, an Add, Sub, Mul or Div of
// int64 constants, or a DequantizeLinear of quantized weights) from its
// constant `inputs` (nullptr for an omitted optional input). `total` counts values as in ReadTensor. The status's
// message says what is wrong, for the caller to prefix with the node.
absl::StatusOr<Initializer> FoldConstant(const onnx::NodeProto& node, const std::vector<const Initializer*>& inputs,
                                         const std::string& source, uint64_t* total);

}  // namespace tinyfed::model_import::internal

#endif  // TINYFED_MODEL_IMPORT_INTERNAL_ONNX_CONSTANTS_H_
