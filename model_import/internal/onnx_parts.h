// Reading the parts of an ONNX graph that the conversion builds on: node
// attributes with their defaults, and initializers (the weights) checked
// and copied out of the file.
#ifndef TINYFED_MODEL_IMPORT_INTERNAL_ONNX_PARTS_H_
#define TINYFED_MODEL_IMPORT_INTERNAL_ONNX_PARTS_H_

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::model_import::internal {

// A name from the file as it may appear in a message: short, escaped.
std::string Shown(const std::string& s);

int64_t IntAttribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback);
float FloatAttribute(const onnx::NodeProto& node, const std::string& name, float fallback);
std::vector<int64_t> IntsAttribute(const onnx::NodeProto& node, const std::string& name);
std::string StringAttribute(const onnx::NodeProto& node, const std::string& name);

// A constant: a weight, a shape, or a value a constant node computed.
struct Initializer {
  std::vector<int64_t> dims;
  bool is_float = true;
  std::vector<float> floats;  // FLOAT tensors
  std::vector<int64_t> ints;  // INT64, INT32, INT8, UINT8 tensors: shapes, pads, quantized values
  bool is_uint8 = false;      // a UINT8 tensor (an activation's zero point)
  uint64_t count() const { return is_float ? floats.size() : ints.size(); }
};

// Most values the initializers and constants of one file may hold.
inline constexpr uint64_t kMaxConstantElements = uint64_t{1} << 26;

// One tensor of the file: as many values as its dims say, all finite, not
// stored outside the file. `total` counts values across calls, refused past
// kMaxConstantElements. INVALID_ARGUMENT naming the tensor.
absl::StatusOr<Initializer> ReadTensor(const onnx::TensorProto& t, const std::string& source, uint64_t* total);

// Every initializer by name, each read by ReadTensor.
absl::StatusOr<std::map<std::string, Initializer>> ReadInitializers(const onnx::GraphProto& graph,
                                                                    const std::string& source, uint64_t* total);

}  // namespace tinyfed::model_import::internal

#endif  // TINYFED_MODEL_IMPORT_INTERNAL_ONNX_PARTS_H_
