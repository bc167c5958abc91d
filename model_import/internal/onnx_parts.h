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

struct Initializer {
  std::vector<int64_t> dims;
  std::vector<float> floats;  // FLOAT tensors
  std::vector<int64_t> ints;  // INT64 tensors (shapes)
};

// Every initializer by name: float32 weights and int64 shapes, each with as
// many values as its dims say, all finite, none stored outside the file, at
// most 2^26 values in all. INVALID_ARGUMENT naming the initializer.
absl::StatusOr<std::map<std::string, Initializer>> ReadInitializers(const onnx::GraphProto& graph,
                                                                    const std::string& source);

}  // namespace tinyfed::model_import::internal

#endif  // TINYFED_MODEL_IMPORT_INTERNAL_ONNX_PARTS_H_
