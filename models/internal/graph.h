// Static analysis of a backbone graph: the one place where every op, tensor,
// shape and quantization parameter of an untrusted bundle is checked, and
// where geometry, cost, requantization constants and tensor lifetimes are
// derived. Validation, the interpreter and `tinyfed model inspect` all read
// the result instead of re-deriving it.
#ifndef TINYFED_MODELS_INTERNAL_GRAPH_H_
#define TINYFED_MODELS_INTERNAL_GRAPH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/quantization.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models::internal {

// Bounds that keep a hostile bundle from causing huge allocations or hangs.
inline constexpr uint32_t kMaxDimension = 65535;
inline constexpr uint64_t kMaxTensorElements = uint64_t{1} << 24;
inline constexpr uint64_t kMaxTotalElements = uint64_t{1} << 25;  // all tensors together
inline constexpr int kMaxTensors = 1024;
inline constexpr int kMaxOps = 1024;
inline constexpr int kMaxConcatInputs = 64;
inline constexpr uint32_t kMaxKernelSide = 255;
inline constexpr uint32_t kMaxStride = 255;
inline constexpr uint64_t kMaxReductionDepth = uint64_t{1} << 16;  // conv/fc inner products
inline constexpr uint64_t kMaxMacs = uint64_t{1} << 31;            // per inference
inline constexpr uint64_t kMaxHeadParameters = uint64_t{1} << 24;
inline constexpr uint64_t kMaxArenaBytes = uint64_t{1} << 26;

struct Geometry {
  int in_h = 1, in_w = 1, in_c = 1;
  int out_h = 1, out_w = 1, out_c = 1;
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0;
};

struct OpAnalysis {
  v1::Op::KindCase kind = v1::Op::KIND_NOT_SET;
  int input = 0;
  int second_input = -1;    // Add only
  std::vector<int> inputs;  // every input, in order
  int output = 0;
  Geometry geometry;
  uint64_t depth = 0;  // inner-product length of weighted ops
  uint64_t macs = 0;
  uint64_t weight_bytes = 0;  // stored parameter bytes (int8 or float)
  // int8 graphs only.
  ActivationRange activation;
  std::vector<QuantizedMultiplier> channel_multipliers;                              // conv, depthwise, fc
  QuantizedMultiplier input_multiplier, second_input_multiplier, output_multiplier;  // add
  std::vector<QuantizedMultiplier> input_multipliers;  // concat: each input's scale / the output's
};

struct TensorLifetime {
  uint64_t bytes = 0;  // one byte per int8 element
  int first_op = 0;    // -1 for the graph input
  int last_op = 0;     // ops.size() for the graph output
};

struct GraphAnalysis {
  std::vector<OpAnalysis> ops;
  std::vector<TensorLifetime> tensors;
  uint64_t total_macs = 0;
  uint64_t total_weight_bytes = 0;
};

// Left shift applied to both inputs of a quantized Add, as in TFLite.
inline constexpr int kAddLeftShift = 20;

std::string OpKindName(v1::Op::KindCase kind);
uint64_t Elements(const v1::Shape& shape);

// INVALID_ARGUMENT naming the op or tensor index and the offending value.
absl::StatusOr<GraphAnalysis> AnalyzeGraph(const v1::Graph& graph, v1::Precision precision);

// AnalyzeGraph plus the rest of the bundle: format version, head, input spec,
// label names. The single gate every loaded bundle passes.
absl::StatusOr<GraphAnalysis> AnalyzeBundle(const v1::ModelBundle& bundle);

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_GRAPH_H_
