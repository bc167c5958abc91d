#include "models/internal/op_analysis.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

absl::Status SpatialOut(int in, uint32_t kernel, uint32_t stride, v1::Padding padding, uint32_t before, uint32_t after,
                        int* out, int* pad_before, const std::string& where) {
  if (kernel == 0 || kernel > kMaxKernelSide) {
    return InvalidArgumentError(StrCat(where, ": kernel size ", kernel, " outside [1, ", kMaxKernelSide, "]"));
  }
  if (stride == 0 || stride > kMaxStride) {
    return InvalidArgumentError(StrCat(where, ": stride ", stride, " outside [1, ", kMaxStride, "]"));
  }
  const int k = static_cast<int>(kernel), s = static_cast<int>(stride);
  if (padding == v1::PADDING_VALID) {
    if (k > in) {
      return InvalidArgumentError(StrCat(where, ": VALID kernel ", k, " is larger than input ", in));
    }
    *out = (in - k) / s + 1;
    *pad_before = 0;
  } else if (padding == v1::PADDING_SAME) {
    *out = (in + s - 1) / s;
    const int total = std::max((*out - 1) * s + k - in, 0);
    *pad_before = total / 2;
  } else if (padding == v1::PADDING_EXPLICIT) {
    // Below the kernel, every window reads the input: an average never
    // divides by zero and a max never comes from padding alone.
    if (before >= kernel || after >= kernel) {
      return InvalidArgumentError(
          StrCat(where, ": pads ", before, " and ", after, " must each be smaller than the kernel ", kernel));
    }
    if (in + static_cast<int>(before + after) < k) {
      return InvalidArgumentError(
          StrCat(where, ": kernel ", k, " is larger than the padded input ", in, " + ", before, " + ", after));
    }
    *out = (in + static_cast<int>(before + after) - k) / s + 1;
    *pad_before = static_cast<int>(before);
  } else {
    return InvalidArgumentError(StrCat(where, ": unknown padding ", static_cast<int>(padding)));
  }
  return absl::OkStatus();
}

bool Finite(float x) { return std::isfinite(x); }

}  // namespace

const OpAnalyzer* AnalyzerOf(v1::Op::KindCase kind) {
  switch (kind) {
    case v1::Op::kConv2D:
      return &kernels::kConv2DAnalyzer;
    case v1::Op::kDepthwiseConv2D:
      return &kernels::kDepthwiseConv2DAnalyzer;
    case v1::Op::kFullyConnected:
      return &kernels::kFullyConnectedAnalyzer;
    case v1::Op::kMaxPool:
      return &kernels::kMaxPoolAnalyzer;
    case v1::Op::kAveragePool:
      return &kernels::kAveragePoolAnalyzer;
    case v1::Op::kGlobalAveragePool:
      return &kernels::kGlobalAveragePoolAnalyzer;
    case v1::Op::kAdd:
      return &kernels::kAddAnalyzer;
    case v1::Op::kConcat:
      return &kernels::kConcatAnalyzer;
    case v1::Op::kReshape:
      return &kernels::kReshapeAnalyzer;
    case v1::Op::KIND_NOT_SET:
      break;
  }
  return nullptr;
}

absl::Status ApplyWindow(const Window& w, Geometry* g, const std::string& where) {
  if (auto s = SpatialOut(g->in_h, w.kernel_h, w.stride_h, w.padding, w.pads.top(), w.pads.bottom(), &g->out_h,
                          &g->pad_top, StrCat(where, " (height)"));
      !s.ok()) {
    return s;
  }
  if (auto s = SpatialOut(g->in_w, w.kernel_w, w.stride_w, w.padding, w.pads.left(), w.pads.right(), &g->out_w,
                          &g->pad_left, StrCat(where, " (width)"));
      !s.ok()) {
    return s;
  }
  g->kernel_h = static_cast<int>(w.kernel_h);
  g->kernel_w = static_cast<int>(w.kernel_w);
  g->stride_h = static_cast<int>(w.stride_h);
  g->stride_w = static_cast<int>(w.stride_w);
  return absl::OkStatus();
}

absl::Status CheckWeights(const v1::Weights& w, const std::vector<uint64_t>& dims, uint64_t channels,
                          v1::Precision precision, const std::string& where, uint64_t* weight_bytes) {
  if (static_cast<size_t>(w.dims_size()) != dims.size()) {
    return InvalidArgumentError(StrCat(where, ": weights have ", w.dims_size(), " dimensions, expected ", dims.size()));
  }
  uint64_t count = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (w.dims(static_cast<int>(i)) != dims[i]) {
      return InvalidArgumentError(
          StrCat(where, ": weight dimension ", i, " is ", w.dims(static_cast<int>(i)), ", expected ", dims[i]));
    }
    count *= dims[i];
  }
  if (precision == v1::PRECISION_INT8) {
    if (w.int8_values().size() != count) {
      return InvalidArgumentError(StrCat(where, ": ", w.int8_values().size(), " int8 weight bytes, expected ", count));
    }
    if (static_cast<uint64_t>(w.channel_scales_size()) != channels) {
      return InvalidArgumentError(StrCat(where, ": ", w.channel_scales_size(), " channel scales, expected ", channels));
    }
    for (int c = 0; c < w.channel_scales_size(); ++c) {
      const float s = w.channel_scales(c);
      if (!Finite(s) || s <= 0.0f) {
        return InvalidArgumentError(
            StrCat(where, ": channel ", c, " has weight scale ", s, ", must be finite and positive"));
      }
    }
    if (static_cast<uint64_t>(w.int32_bias_size()) != channels) {
      return InvalidArgumentError(StrCat(where, ": ", w.int32_bias_size(), " int32 biases, expected ", channels));
    }
    *weight_bytes = count + 4 * channels;
  } else {
    if (static_cast<uint64_t>(w.float_values_size()) != count) {
      return InvalidArgumentError(StrCat(where, ": ", w.float_values_size(), " float weights, expected ", count));
    }
    if (static_cast<uint64_t>(w.float_bias_size()) != channels) {
      return InvalidArgumentError(StrCat(where, ": ", w.float_bias_size(), " float biases, expected ", channels));
    }
    for (float v : w.float_values()) {
      if (!Finite(v)) return InvalidArgumentError(StrCat(where, ": a weight is not finite"));
    }
    for (float v : w.float_bias()) {
      if (!Finite(v)) return InvalidArgumentError(StrCat(where, ": a bias is not finite"));
    }
    *weight_bytes = 4 * (count + channels);
  }
  return absl::OkStatus();
}

absl::Status SameQuantization(const OpSite& site, OpAnalysis*) {
  const v1::Tensor& in = site.in;
  const v1::Tensor& out = site.out;
  if (in.scale() != out.scale() || in.zero_point() != out.zero_point()) {
    return InvalidArgumentError(StrCat(site.where, ": input (scale ", in.scale(), ", zero point ", in.zero_point(),
                                       ") and output (scale ", out.scale(), ", zero point ", out.zero_point(),
                                       ") must share quantization"));
  }
  return absl::OkStatus();
}

absl::Status ChannelMultipliers(const OpSite& site, const v1::Weights& w, OpAnalysis* a) {
  a->channel_multipliers.reserve(static_cast<size_t>(w.channel_scales_size()));
  for (int c = 0; c < w.channel_scales_size(); ++c) {
    const double m = static_cast<double>(site.in.scale()) * w.channel_scales(c) / site.out.scale();
    auto q = Multiplier(m, StrCat(site.where, " channel ", c));
    if (!q.ok()) return q.status();
    a->channel_multipliers.push_back(*q);
  }
  return absl::OkStatus();
}

absl::StatusOr<QuantizedMultiplier> Multiplier(double m, const std::string& where) {
  auto q = QuantizeMultiplier(m);
  if (!q.ok()) return InvalidArgumentError(StrCat(where, ": ", q.status().message()));
  return q;
}

}  // namespace tinyfed::models::internal
