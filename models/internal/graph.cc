#include "models/internal/graph.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "models/internal/op_analysis.h"

namespace tinyfed::models::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

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
    case v1::Op::kConcat:
      return "Concat";
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
    const int fewest_inputs = a.kind == v1::Op::kAdd || a.kind == v1::Op::kConcat ? 2 : 1;
    const int most_inputs = a.kind == v1::Op::kConcat ? kMaxConcatInputs : fewest_inputs;
    if (op.inputs_size() < fewest_inputs || op.inputs_size() > most_inputs) {
      return InvalidArgumentError(StrCat(where, " has ", op.inputs_size(), " inputs, expected ", fewest_inputs,
                                         fewest_inputs == most_inputs ? "" : StrCat(" to ", most_inputs)));
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
    a.inputs.assign(op.inputs().begin(), op.inputs().end());
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
    const OpSite site{.graph = graph, .op = op, .in = in, .out = out, .precision = precision, .where = where};
    const OpAnalyzer& analyzer = *AnalyzerOf(a.kind);
    if (auto s = analyzer.shape(site, &a); !s.ok()) return s;
    if (g.out_h != out_h || g.out_w != out_w || g.out_c != out_c) {
      return InvalidArgumentError(StrCat(where, " produces ", g.out_h, "x", g.out_w, "x", g.out_c,
                                         " but its output tensor ", a.output, " is ", out_h, "x", out_w, "x", out_c));
    }
    if (uint64_t{static_cast<uint32_t>(g.kernel_h)} * static_cast<uint32_t>(g.kernel_w) > kMaxDimension + 1) {
      return InvalidArgumentError(StrCat(where, ": window of ", g.kernel_h, "x", g.kernel_w, " is larger than ",
                                         kMaxDimension + 1, " elements"));
    }
    if (a.depth > kMaxReductionDepth) {
      return InvalidArgumentError(
          StrCat(where, ": inner product of ", a.depth, " terms, more than ", kMaxReductionDepth));
    }
    a.macs = a.depth * Elements(out.shape());
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
      if (auto s = analyzer.requantize(site, &a); !s.ok()) return s;
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
