// What each op kind's analysis shares (graph.h runs it, the kernel files
// define it per op): the op and tensors it reads, and the checks and
// fixed-point constants several kinds derive the same way. Every error names
// the op (`where`) and the offending value.
#ifndef TINYFED_MODELS_INTERNAL_OP_ANALYSIS_H_
#define TINYFED_MODELS_INTERNAL_OP_ANALYSIS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/internal/graph.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models::internal {

// One op of a graph under analysis, its tensors already checked.
struct OpSite {
  const v1::Graph& graph;
  const v1::Op& op;
  const v1::Tensor& in;   // the first input
  const v1::Tensor& out;  // the output
  v1::Precision precision;
  std::string where;  // "op 3 (Conv2D)"
};

// One op kind's analysis, in two steps so that graph-wide bounds are checked
// between them. `shape` checks parameters and weights against the input and
// fills geometry, depth and weight bytes; `requantize` (int8 graphs only)
// derives the constants the kernel multiplies by.
struct OpAnalyzer {
  absl::Status (*shape)(const OpSite& site, OpAnalysis* a);
  absl::Status (*requantize)(const OpSite& site, OpAnalysis* a);
};

// The analyzer of each kind, defined beside its kernels in kernels/*.cc.
// nullptr for KIND_NOT_SET.
const OpAnalyzer* AnalyzerOf(v1::Op::KindCase kind);

struct Window {
  uint32_t kernel_h, kernel_w, stride_h, stride_w;
  v1::Padding padding;
  v1::Pads pads;  // PADDING_EXPLICIT only
};

template <typename P>
Window WindowOf(const P& p) {
  return {p.kernel_height(), p.kernel_width(), p.stride_height(), p.stride_width(), p.padding(), p.pads()};
}

// Output size and padding for a sliding window, as TFLite computes them
// (VALID, SAME) or as the pads say (EXPLICIT).
absl::Status ApplyWindow(const Window& w, Geometry* g, const std::string& where);
// `w` has exactly `dims` and, per output channel, a scale and bias (int8) or
// a bias (float), all finite; sets the stored bytes.
absl::Status CheckWeights(const v1::Weights& w, const std::vector<uint64_t>& dims, uint64_t channels,
                          v1::Precision precision, const std::string& where, uint64_t* weight_bytes);
// Input and output must share scale and zero point (ops that only move or
// compare values).
absl::Status SameQuantization(const OpSite& site, OpAnalysis* a);
// A weighted op's per-channel multiplier, input scale x weight scale / output
// scale.
absl::Status ChannelMultipliers(const OpSite& site, const v1::Weights& w, OpAnalysis* a);
absl::StatusOr<QuantizedMultiplier> Multiplier(double m, const std::string& where);

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_OP_ANALYSIS_H_
