// A model trained elsewhere (PyTorch, TensorFlow) and exported to ONNX
// becomes a float bundle: the graph up to the named embedding is the frozen
// backbone, and what follows it, when it is one Gemm or MatMul (+Add)
// (+Softmax), the initial head; otherwise the head starts at zero. The
// bundle then goes through PTQ or QAT like a backbone tinyfed trained
// (models/quantize.h). Operators' tools use it; gateways never see ONNX.
//
// Supported float ops (opset 7 and later): Conv (depthwise with multiplier
// 1 natively; any other grouping, a depthwise multiplier among them, runs
// as one dense Conv with zero weights across groups, at `group` times the
// MACs), BatchNormalization after a Conv (folded into it), Relu and
// Clip(0, 6) after an op (fused as its activation), MaxPool, AveragePool,
// GlobalAveragePool, Add, Concat of 2 to 64 maps along channels (each input
// requantized to the output's scale in int8), Flatten, Reshape to [N, -1],
// Gemm and MatMul
// (+Add), a constant zero Pad of height and width before a Conv (taken into
// its padding: PyTorch's ZeroPad2d); zero padding of each side below the
// kernel (PyTorch's symmetric padding too). The shape arithmetic exporters
// write (Constant, Shape, ConstantOfShape, Concat, Reshape, Slice,
// Transpose, Cast, Unsqueeze, Squeeze, Gather, int64 Add/Sub/Mul/Div on
// constants) is folded.
//
// Quantized graphs as PyTorch exports them (QuantizeLinear, Cast and
// DequantizeLinear around each op; int8 weights through DequantizeLinear,
// per tensor or per output channel): the result is an int8 bundle with the
// file's activation scales and zero points (uint8 ones shifted by 128) and
// its weight scales, ready to run; every backbone tensor needs its
// QuantizeLinear (pools and reshapes share their input's). Requantization is
// TFLite's, so values may differ from PyTorch's qnnpack by one step of the
// grid. Anything else is an error naming the node, its op
// type, the opset and what is supported. The file is untrusted input: its size is checked before
// parsing, then ONNX's checker runs on it, and every shape is derived and
// checked here (ONNX's shape inference is not safe on hostile files in the
// Debian release).
#ifndef TINYFED_MODEL_IMPORT_ONNX_IMPORT_H_
#define TINYFED_MODEL_IMPORT_ONNX_IMPORT_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::model_import {

inline constexpr uint64_t kMaxOnnxFileBytes = uint64_t{64} << 20;

struct OnnxImportOptions {
  // The tensor the head reads (a node output name in the file).
  std::string embedding;
  // One name per class, in the order of the model's outputs.
  std::vector<std::string> labels;
  // How raw features become the model's input, per channel (one value or
  // one per channel); empty: the model takes them as they are.
  std::vector<float> mean, stddev;
  std::string name;  // stored in the bundle; default: the file's stem
};

// INVALID_ARGUMENT naming what is wrong (the node, the tensor, the option);
// NOT_FOUND for a missing file; OUT_OF_RANGE past kMaxOnnxFileBytes.
absl::StatusOr<v1::ModelBundle> ImportOnnx(const std::filesystem::path& path, const OnnxImportOptions& options);
// The same from the file's bytes; `source` names it in errors and metadata.
absl::StatusOr<v1::ModelBundle> ImportOnnxBytes(const std::string& bytes, const std::string& source,
                                                const OnnxImportOptions& options);

}  // namespace tinyfed::model_import

#endif  // TINYFED_MODEL_IMPORT_ONNX_IMPORT_H_
