#include "models/internal/graph.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tinyfed::models::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

struct Window {
  uint32_t kernel_h, kernel_w, stride_h, stride_w;
  v1::Padding padding;
};

template <typename P>
Window WindowOf(const P& p) {
  return {p.kernel_height(), p.kernel_width(), p.stride_height(), p.stride_width(), p.padding()};
}

bool Finite(float x) { return std::isfinite(x); }

absl::Status CheckShape(const v1::Shape& s, const std::string& what) {
  for (uint32_t d : {s.height(), s.width(), s.channels()}) {
    if (d == 0 || d > kMaxDimension) {
      return InvalidArgumentError(StrCat(what, " has shape ", s.height(), "x", s.width(), "x", s.channels(),
                                         ": each dimension must be in [1, ", kMaxDimension, "]"));
    }
  }
  if (Elements(s) > kMaxTensorElements) {
    return InvalidArgumentError(StrCat(what, " has ", Elements(s), " elements, more than ", kMaxTensorElements));
  }
  return absl::OkStatus();
}

// Output size along one axis, and the padding before it, as TFLite computes them.
absl::Status SpatialOut(int in, uint32_t kernel, uint32_t stride, v1::Padding padding, int* out, int* pad_before,
                        const std::string& where) {
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
  } else {
    return InvalidArgumentError(StrCat(where, ": unknown padding ", static_cast<int>(padding)));
  }
  return absl::OkStatus();
}

absl::Status ApplyWindow(const Window& w, Geometry* g, const std::string& where) {
  if (auto s =
          SpatialOut(g->in_h, w.kernel_h, w.stride_h, w.padding, &g->out_h, &g->pad_top, StrCat(where, " (height)"));
      !s.ok()) {
    return s;
  }
  if (auto s =
          SpatialOut(g->in_w, w.kernel_w, w.stride_w, w.padding, &g->out_w, &g->pad_left, StrCat(where, " (width)"));
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

ActivationRange RangeOf(v1::Activation act, const v1::Tensor& out) {
  ActivationRange r;
  const AffineQuantization q{out.scale(), out.zero_point()};
  if (act == v1::ACTIVATION_RELU || act == v1::ACTIVATION_RELU6) {
    r.min = std::max<int32_t>(-128, out.zero_point());
  }
  if (act == v1::ACTIVATION_RELU6) {
    r.max =
        static_cast<int32_t>(std::min<int64_t>(127, int64_t{out.zero_point()} + RoundHalfAwayFromZero(6.0f / q.scale)));
  }
  return r;
}

absl::Status SameQuantization(const v1::Tensor& in, const v1::Tensor& out, const std::string& where) {
  if (in.scale() != out.scale() || in.zero_point() != out.zero_point()) {
    return InvalidArgumentError(StrCat(where, ": input (scale ", in.scale(), ", zero point ", in.zero_point(),
                                       ") and output (scale ", out.scale(), ", zero point ", out.zero_point(),
                                       ") must share quantization"));
  }
  return absl::OkStatus();
}

absl::StatusOr<QuantizedMultiplier> Multiplier(double m, const std::string& where) {
  auto q = QuantizeMultiplier(m);
  if (!q.ok()) return InvalidArgumentError(StrCat(where, ": ", q.status().message()));
  return q;
}

}  // namespace

std::string OpKindName(v1::Op::KindCase kind) {
  switch (kind) {
    case v1::Op::kConv2D:
      return "Conv2D";
    case v1::Op::kDepthwiseConv2D:
      return "DepthwiseConv2D";
    case v1::Op::kFullyConnected:
      return "FullyConnected";
    case v1::Op::kMaxPool:
      return "MaxPool";
    case v1::Op::kAveragePool:
      return "AveragePool";
    case v1::Op::kGlobalAveragePool:
      return "GlobalAveragePool";
    case v1::Op::kAdd:
      return "Add";
    case v1::Op::kReshape:
      return "Reshape";
    case v1::Op::KIND_NOT_SET:
      break;
  }
  return "Unknown";
}

uint64_t Elements(const v1::Shape& s) { return uint64_t{s.height()} * s.width() * s.channels(); }

absl::StatusOr<GraphAnalysis> AnalyzeGraph(const v1::Graph& graph, v1::Precision precision) {
  if (precision != v1::PRECISION_INT8 && precision != v1::PRECISION_FLOAT32) {
    return InvalidArgumentError(StrCat("unknown precision ", static_cast<int>(precision)));
  }
  const bool int8 = precision == v1::PRECISION_INT8;
  const int num_tensors = graph.tensors_size();
  const int num_ops = graph.ops_size();
  if (num_tensors < 2 || num_tensors > kMaxTensors) {
    return InvalidArgumentError(StrCat("graph has ", num_tensors, " tensors, expected 2 to ", kMaxTensors));
  }
  if (num_ops < 1 || num_ops > kMaxOps) {
    return InvalidArgumentError(StrCat("graph has ", num_ops, " ops, expected 1 to ", kMaxOps));
  }
  GraphAnalysis result;
  result.tensors.resize(static_cast<size_t>(num_tensors));
  uint64_t total_elements = 0;
  for (int t = 0; t < num_tensors; ++t) {
    const auto& tensor = graph.tensors(t);
    const std::string name = StrCat("tensor ", t);
    if (auto s = CheckShape(tensor.shape(), name); !s.ok()) return s;
    if (int8) {
      if (!Finite(tensor.scale()) || tensor.scale() <= 0.0f) {
        return InvalidArgumentError(StrCat(name, " has scale ", tensor.scale(), ", must be finite and positive"));
      }
      if (tensor.zero_point() < -128 || tensor.zero_point() > 127) {
        return InvalidArgumentError(StrCat(name, " has zero point ", tensor.zero_point(), ", outside [-128, 127]"));
      }
    }
    result.tensors[static_cast<size_t>(t)].bytes = Elements(tensor.shape());
    total_elements += Elements(tensor.shape());
    if (total_elements > kMaxTotalElements) {
      return InvalidArgumentError(
          StrCat("graph tensors hold more than ", kMaxTotalElements, " elements in all (at tensor ", t, ")"));
    }
    result.tensors[static_cast<size_t>(t)].first_op = -2;  // not yet written
    result.tensors[static_cast<size_t>(t)].last_op = -2;
  }
  if (graph.input() >= static_cast<uint32_t>(num_tensors)) {
    return InvalidArgumentError(StrCat("graph input ", graph.input(), " is not a tensor index"));
  }
  if (graph.output() >= static_cast<uint32_t>(num_tensors)) {
    return InvalidArgumentError(StrCat("graph output ", graph.output(), " is not a tensor index"));
  }
  result.tensors[graph.input()].first_op = -1;

  auto defined = [&](uint32_t t) { return result.tensors[t].first_op != -2; };
  for (int i = 0; i < num_ops; ++i) {
    const v1::Op& op = graph.ops(i);
    OpAnalysis a;
    a.kind = op.kind_case();
    const std::string where = StrCat("op ", i, " (", OpKindName(a.kind), ")");
    if (a.kind == v1::Op::KIND_NOT_SET) {
      return InvalidArgumentError(StrCat("op ", i, " has no kind"));
    }
    const int expected_inputs = a.kind == v1::Op::kAdd ? 2 : 1;
    if (op.inputs_size() != expected_inputs) {
      return InvalidArgumentError(StrCat(where, " has ", op.inputs_size(), " inputs, expected ", expected_inputs));
    }
    for (uint32_t in : op.inputs()) {
      if (in >= static_cast<uint32_t>(num_tensors) || !defined(in)) {
        return InvalidArgumentError(StrCat(where, " reads tensor ", in, ", which is not written before it"));
      }
    }
    if (op.output() >= static_cast<uint32_t>(num_tensors) || defined(op.output())) {
      return InvalidArgumentError(
          StrCat(where, " writes tensor ", op.output(), ", which is out of range or already written"));
    }
    if (!v1::Activation_IsValid(op.activation())) {
      return InvalidArgumentError(StrCat(where, " has unknown activation ", op.activation()));
    }
    a.input = static_cast<int>(op.inputs(0));
    a.output = static_cast<int>(op.output());
    const v1::Tensor& in = graph.tensors(a.input);
    const v1::Tensor& out = graph.tensors(a.output);
    Geometry& g = a.geometry;
    g.in_h = static_cast<int>(in.shape().height());
    g.in_w = static_cast<int>(in.shape().width());
    g.in_c = static_cast<int>(in.shape().channels());
    const int out_h = static_cast<int>(out.shape().height());
    const int out_w = static_cast<int>(out.shape().width());
    const int out_c = static_cast<int>(out.shape().channels());
    g.out_h = g.in_h;
    g.out_w = g.in_w;
    g.out_c = g.in_c;
    const bool has_weights =
        a.kind == v1::Op::kConv2D || a.kind == v1::Op::kDepthwiseConv2D || a.kind == v1::Op::kFullyConnected;
    uint64_t depth = 0;  // inner-product length, for weighted ops

    switch (a.kind) {
      case v1::Op::kConv2D: {
        const auto& p = op.conv2d();
        if (auto s = ApplyWindow(WindowOf(p), &g, where); !s.ok()) return s;
        g.out_c = static_cast<int>(p.out_channels());
        if (p.out_channels() == 0 || p.out_channels() > kMaxDimension) {
          return InvalidArgumentError(StrCat(where, ": out_channels ", p.out_channels()));
        }
        depth = uint64_t{p.kernel_height()} * p.kernel_width() * in.shape().channels();
        if (auto s = CheckWeights(p.weights(),
                                  {p.out_channels(), p.kernel_height(), p.kernel_width(), in.shape().channels()},
                                  p.out_channels(), precision, where, &a.weight_bytes);
            !s.ok()) {
          return s;
        }
        break;
      }
      case v1::Op::kDepthwiseConv2D: {
        const auto& p = op.depthwise_conv2d();
        if (auto s = ApplyWindow(WindowOf(p), &g, where); !s.ok()) return s;
        depth = uint64_t{p.kernel_height()} * p.kernel_width();
        if (auto s = CheckWeights(p.weights(), {p.kernel_height(), p.kernel_width(), in.shape().channels()},
                                  in.shape().channels(), precision, where, &a.weight_bytes);
            !s.ok()) {
          return s;
        }
        break;
      }
      case v1::Op::kFullyConnected: {
        const auto& p = op.fully_connected();
        depth = Elements(in.shape());
        g.in_h = g.in_w = 1;
        g.in_c = static_cast<int>(depth);
        g.out_h = g.out_w = 1;
        g.out_c = static_cast<int>(p.out_features());
        if (p.out_features() == 0 || p.out_features() > kMaxDimension) {
          return InvalidArgumentError(StrCat(where, ": out_features ", p.out_features()));
        }
        if (auto s = CheckWeights(p.weights(), {p.out_features(), depth}, p.out_features(), precision, where,
                                  &a.weight_bytes);
            !s.ok()) {
          return s;
        }
        break;
      }
      case v1::Op::kMaxPool:
      case v1::Op::kAveragePool: {
        const auto& p = a.kind == v1::Op::kMaxPool ? op.max_pool() : op.average_pool();
        if (auto s = ApplyWindow(WindowOf(p), &g, where); !s.ok()) return s;
        break;
      }
      case v1::Op::kGlobalAveragePool:
        g.kernel_h = g.in_h;
        g.kernel_w = g.in_w;
        g.stride_h = g.in_h;
        g.stride_w = g.in_w;
        g.out_h = g.out_w = 1;
        break;
      case v1::Op::kAdd: {
        a.second_input = static_cast<int>(op.inputs(1));
        const auto& other = graph.tensors(a.second_input).shape();
        if (other.height() != in.shape().height() || other.width() != in.shape().width() ||
            other.channels() != in.shape().channels()) {
          return InvalidArgumentError(
              StrCat(where, ": inputs ", a.input, " and ", a.second_input, " have different shapes"));
        }
        break;
      }
      case v1::Op::kReshape:
        if (Elements(out.shape()) != Elements(in.shape())) {
          return InvalidArgumentError(
              StrCat(where, ": reshape from ", Elements(in.shape()), " to ", Elements(out.shape()), " elements"));
        }
        g.out_h = out_h;
        g.out_w = out_w;
        g.out_c = out_c;
        break;
      case v1::Op::KIND_NOT_SET:
        break;
    }
    if (g.out_h != out_h || g.out_w != out_w || g.out_c != out_c) {
      return InvalidArgumentError(StrCat(where, " produces ", g.out_h, "x", g.out_w, "x", g.out_c,
                                         " but its output tensor ", a.output, " is ", out_h, "x", out_w, "x", out_c));
    }
    if (uint64_t{static_cast<uint32_t>(g.kernel_h)} * static_cast<uint32_t>(g.kernel_w) > kMaxDimension + 1) {
      return InvalidArgumentError(StrCat(where, ": window of ", g.kernel_h, "x", g.kernel_w, " is larger than ",
                                         kMaxDimension + 1, " elements"));
    }
    if (depth > kMaxReductionDepth) {
      return InvalidArgumentError(
          StrCat(where, ": inner product of ", depth, " terms, more than ", kMaxReductionDepth));
    }
    a.macs = depth * Elements(out.shape());
    result.total_macs += a.macs;
    if (result.total_macs > kMaxMacs) {
      return InvalidArgumentError(
          StrCat("graph needs more than ", kMaxMacs, " multiply-accumulates per inference (at ", where, ")"));
    }
    result.total_weight_bytes += a.weight_bytes;

    if (int8) {
      a.activation = RangeOf(op.activation(), out);
      if (a.activation.min > a.activation.max) {
        return InvalidArgumentError(StrCat(where, ": empty activation range"));
      }
      if (has_weights) {
        const v1::Weights& w = a.kind == v1::Op::kConv2D           ? op.conv2d().weights()
                               : a.kind == v1::Op::kFullyConnected ? op.fully_connected().weights()
                                                                   : op.depthwise_conv2d().weights();
        a.channel_multipliers.reserve(static_cast<size_t>(w.channel_scales_size()));
        for (int c = 0; c < w.channel_scales_size(); ++c) {
          const double m = static_cast<double>(in.scale()) * w.channel_scales(c) / out.scale();
          auto q = Multiplier(m, StrCat(where, " channel ", c));
          if (!q.ok()) return q.status();
          a.channel_multipliers.push_back(*q);
        }
      } else if (a.kind == v1::Op::kAdd) {
        const v1::Tensor& in2 = graph.tensors(a.second_input);
        const double twice_max = 2.0 * std::max(in.scale(), in2.scale());
        auto m1 = Multiplier(in.scale() / twice_max, where);
        auto m2 = Multiplier(in2.scale() / twice_max, where);
        auto mo = Multiplier(twice_max / ((1 << kAddLeftShift) * static_cast<double>(out.scale())), where);
        if (!m1.ok()) return m1.status();
        if (!m2.ok()) return m2.status();
        if (!mo.ok()) return mo.status();
        a.input_multiplier = *m1;
        a.second_input_multiplier = *m2;
        a.output_multiplier = *mo;
      } else {
        if (auto s = SameQuantization(in, out, where); !s.ok()) return s;
      }
    }

    for (uint32_t t : op.inputs()) result.tensors[t].last_op = i;
    result.tensors[op.output()].first_op = i;
    result.tensors[op.output()].last_op = i;
    result.ops.push_back(std::move(a));
  }
  if (!defined(graph.output()) || graph.output() == graph.input()) {
    return InvalidArgumentError(StrCat("graph output ", graph.output(), " is not written by any op"));
  }
  result.tensors[graph.output()].last_op = num_ops;
  return result;
}

absl::StatusOr<GraphAnalysis> AnalyzeBundle(const v1::ModelBundle& bundle) {
  if (bundle.format_version() != kBundleFormatVersion) {
    return InvalidArgumentError(StrCat("bundle format version ", bundle.format_version(),
                                       " is not supported (expected ", kBundleFormatVersion, ")"));
  }
  auto analysis = AnalyzeGraph(bundle.backbone(), bundle.precision());
  if (!analysis.ok()) return analysis.status();
  const v1::Graph& graph = bundle.backbone();
  const v1::Shape& in_shape = graph.tensors(static_cast<int>(graph.input())).shape();
  const v1::InputSpec& input = bundle.input();
  if (input.shape().height() != in_shape.height() || input.shape().width() != in_shape.width() ||
      input.shape().channels() != in_shape.channels()) {
    return InvalidArgumentError(StrCat("input spec shape ", input.shape().height(), "x", input.shape().width(), "x",
                                       input.shape().channels(), " differs from the input tensor's ", in_shape.height(),
                                       "x", in_shape.width(), "x", in_shape.channels()));
  }
  const int channels = static_cast<int>(in_shape.channels());
  if ((input.mean_size() != 1 && input.mean_size() != channels) || input.mean_size() != input.stddev_size()) {
    return InvalidArgumentError(StrCat("input spec has ", input.mean_size(), " means and ", input.stddev_size(),
                                       " stddevs, expected 1 or ", channels, " of each"));
  }
  for (int i = 0; i < input.mean_size(); ++i) {
    if (!Finite(input.mean(i)) || !Finite(input.stddev(i)) || !(input.stddev(i) > 0.0f)) {
      return InvalidArgumentError(StrCat("input spec channel ", i, " has mean ", input.mean(i), " and stddev ",
                                         input.stddev(i), "; stddev must be finite and positive"));
    }
  }
  const v1::Head& head = bundle.head();
  const uint64_t embedding = Elements(graph.tensors(static_cast<int>(graph.output())).shape());
  if (head.in_features() != embedding) {
    return InvalidArgumentError(
        StrCat("head reads ", head.in_features(), " features but the backbone's output has ", embedding));
  }
  if (head.num_classes() < 2 || head.num_classes() > kMaxDimension) {
    return InvalidArgumentError(StrCat("head has ", head.num_classes(), " classes, expected 2 to ", kMaxDimension));
  }
  const uint64_t params = uint64_t{head.num_classes()} * head.in_features();
  if (params > kMaxHeadParameters || static_cast<uint64_t>(head.weights_size()) != params ||
      head.bias_size() != static_cast<int>(head.num_classes())) {
    return InvalidArgumentError(StrCat("head has ", head.weights_size(), " weights and ", head.bias_size(),
                                       " biases, expected ", params, " and ", head.num_classes()));
  }
  for (float v : head.weights()) {
    if (!Finite(v)) return InvalidArgumentError("head has a weight that is not finite");
  }
  for (float v : head.bias()) {
    if (!Finite(v)) return InvalidArgumentError("head has a bias that is not finite");
  }
  if (bundle.label_names_size() != static_cast<int>(head.num_classes())) {
    return InvalidArgumentError(
        StrCat("bundle has ", bundle.label_names_size(), " label names for ", head.num_classes(), " classes"));
  }
  return analysis;
}

}  // namespace tinyfed::models::internal
