// OnnxConverter's conversion of each supported node (onnx_converter.h).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "model_import/internal/onnx_converter.h"
#include "model_import/internal/onnx_layouts.h"
#include "model_import/internal/onnx_window.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::model_import::internal {

using absl::InvalidArgumentError;
using absl::StrCat;

absl::Status OnnxConverter::Conv(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0, /*padded_ok=*/true));
  TINYFED_ASSIGN_OR_RETURN(const Initializer* w, Weight(node, 1));
  if (!in.spatial) return Unsupported(node, "its input is not an image (N, C, H, W)");
  if (w->dims.size() != 4) return Unsupported(node, "the weights are not 4-D (O, I, kH, kW)");
  const int out_c = static_cast<int>(w->dims[0]);
  const int64_t group_attribute = IntAttribute(node, "group", 1);
  if (group_attribute < 1 || group_attribute > in.c) {
    return Unsupported(node, StrCat("group ", group_attribute, " with ", in.c, " input channels"));
  }
  const int group = static_cast<int>(group_attribute);
  const bool depthwise = group > 1 && group == in.c && out_c == in.c && w->dims[1] == 1;
  if (in.c % group != 0 || out_c % group != 0 || w->dims[1] != in.c / group) {
    return Unsupported(node, StrCat("group ", group, " with ", in.c, " input and ", out_c,
                                    " output channels, weights reading ", w->dims[1]));
  }
  // Other groupings (grouped convolution, depthwise with a multiplier) run
  // as one dense Conv whose weights are zero across groups: the same sums,
  // at `group` times the MACs.
  const bool grouped = group > 1 && !depthwise;
  // Run dense, a grouped Conv reads every input channel: bound what that
  // costs before building it (the bundle's own limits are checked later).
  const int64_t dense_depth = int64_t{in.c} * w->dims[2] * w->dims[3];
  if (grouped && (dense_depth > int64_t{1} << 16 || dense_depth * out_c > int64_t{1} << 24)) {
    return Unsupported(node, StrCat("group ", group, " run dense would take ", dense_depth * out_c, " weights"));
  }
  std::vector<int64_t> kernel = IntsAttribute(node, "kernel_shape");
  if (kernel.empty()) kernel = {w->dims[2], w->dims[3]};
  if (kernel.size() != 2 || kernel[0] != w->dims[2] || kernel[1] != w->dims[3])
    return Unsupported(node, "kernel_shape differs from the weights");
  auto window = internal::WindowOf(node, in.h, in.w, kernel, in.pads);
  if (!window.ok()) return Unsupported(node, std::string(window.status().message()));
  const Window win = *window;
  std::vector<float> bias(static_cast<size_t>(out_c), 0.0f);
  if (node.input_size() > 2 && !node.input(2).empty()) {
    TINYFED_ASSIGN_OR_RETURN(const Initializer* b, Weight(node, 2));
    if (b->floats.size() != bias.size())
      return Unsupported(node, "the bias does not have one value per output channel");
    bias = b->floats;
  }
  Value out{.tensor = Tensor(win.out_h, win.out_w, out_c),
            .c = out_c,
            .h = win.out_h,
            .w = win.out_w,
            .spatial = true,
            .producer = 0,
            .chw_order = false};
  v1::Op* op = Op(in.tensor, out.tensor);
  out.producer = bundle_.backbone().ops_size() - 1;
  const int kh = win.kh, kw = win.kw;
  v1::Weights* weights;
  if (depthwise) {
    auto* p = op->mutable_depthwise_conv2d();
    SetWindow(p, win);
    weights = p->mutable_weights();
    for (int d : {kh, kw, out_c}) weights->add_dims(static_cast<uint32_t>(d));
    const std::vector<float> hwc = internal::HwcFromC1hw(w->floats, out_c, kh, kw);
    weights->mutable_float_values()->Assign(hwc.begin(), hwc.end());
  } else {
    auto* p = op->mutable_conv2d();
    p->set_out_channels(static_cast<uint32_t>(out_c));
    SetWindow(p, win);
    weights = p->mutable_weights();
    const int ic = in.c;
    for (int d : {out_c, kh, kw, ic}) weights->add_dims(static_cast<uint32_t>(d));
    const std::vector<float> ohwi = internal::OhwiFromOihw(
        grouped ? internal::OihwFromGrouped(w->floats, out_c, ic, group, kh, kw) : w->floats, out_c, ic, kh, kw);
    weights->mutable_float_values()->Assign(ohwi.begin(), ohwi.end());
  }
  weights->mutable_float_bias()->Assign(bias.begin(), bias.end());
  RememberWeightScales(node, out.producer, out_c);
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

absl::StatusOr<v1::Op*> OnnxConverter::Fusable(const onnx::NodeProto& node, const Value& v) {
  if (v.producer < 0 || uses_[node.input(0)] != 1) {
    return Unsupported(node, "it must follow a Conv, Gemm, pooling or Add whose output it alone reads");
  }
  v1::Op* op = bundle_.mutable_backbone()->mutable_ops(v.producer);
  if (op->activation() != v1::ACTIVATION_NONE) return Unsupported(node, "its input already has an activation");
  return op;
}

absl::Status OnnxConverter::BatchNorm(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
  TINYFED_ASSIGN_OR_RETURN(v1::Op * op, Fusable(node, in));
  v1::Weights* w = op->has_conv2d()             ? op->mutable_conv2d()->mutable_weights()
                   : op->has_depthwise_conv2d() ? op->mutable_depthwise_conv2d()->mutable_weights()
                                                : nullptr;
  if (w == nullptr) return Unsupported(node, "BatchNormalization must follow a Conv (it is folded into it)");
  const float eps = FloatAttribute(node, "epsilon", 1e-5f);
  std::vector<const Initializer*> p(4);
  for (int i = 0; i < 4; ++i) {
    TINYFED_ASSIGN_OR_RETURN(p[static_cast<size_t>(i)], Weight(node, i + 1));
    if (p[static_cast<size_t>(i)]->floats.size() != static_cast<size_t>(in.c)) {
      return Unsupported(node, "scale, bias, mean and var must hold one value per channel");
    }
  }
  const int channels = in.c;
  const int per_channel = w->float_values_size() / channels;
  const bool depthwise = op->has_depthwise_conv2d();
  for (int c = 0; c < channels; ++c) {
    const auto k = static_cast<size_t>(c);
    const float scale = p[0]->floats[k] / std::sqrt(p[3]->floats[k] + eps);
    for (int j = 0; j < per_channel; ++j) {
      const int at = depthwise ? j * channels + c : c * per_channel + j;  // HWC or OHWI
      w->set_float_values(at, w->float_values(at) * scale);
    }
    w->set_float_bias(c, (w->float_bias(c) - p[2]->floats[k]) * scale + p[1]->floats[k]);
  }
  values_[node.output(0)] = in;
  return absl::OkStatus();
}

absl::Status OnnxConverter::Activation(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
  v1::Activation act = v1::ACTIVATION_RELU;
  if (node.op_type() == "Clip") {
    float lo = FloatAttribute(node, "min", -INFINITY), hi = FloatAttribute(node, "max", INFINITY);
    for (int i = 1; i < std::min(node.input_size(), 3); ++i) {
      if (node.input(i).empty()) continue;
      TINYFED_ASSIGN_OR_RETURN(const Initializer* bound, Weight(node, i));
      if (bound->floats.size() != 1) return Unsupported(node, "min and max must be scalars");
      (i == 1 ? lo : hi) = bound->floats[0];
    }
    if (lo == 0.0f && hi == 6.0f) {
      act = v1::ACTIVATION_RELU6;
    } else if (lo == 0.0f && hi == INFINITY) {
      act = v1::ACTIVATION_RELU;
    } else {
      return Unsupported(node, StrCat("Clip to [", lo, ", ", hi, "]; only [0, 6] (ReLU6) and [0, inf) (ReLU)"));
    }
  }
  TINYFED_ASSIGN_OR_RETURN(v1::Op * op, Fusable(node, in));
  op->set_activation(act);
  values_[node.output(0)] = in;
  return absl::OkStatus();
}

absl::Status OnnxConverter::Pool(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
  if (!in.spatial) return Unsupported(node, "its input is not an image (N, C, H, W)");
  auto window = internal::WindowOf(node, in.h, in.w, IntsAttribute(node, "kernel_shape"));
  if (!window.ok()) return Unsupported(node, std::string(window.status().message()));
  const Window win = *window;
  const bool max = node.op_type() == "MaxPool";
  if (!max && win.padding.kind != v1::PADDING_VALID && IntAttribute(node, "count_include_pad", 0) != 0) {
    return Unsupported(node, "count_include_pad 1 (padding is left out of the average here)");
  }
  if (node.output_size() > 1 && !node.output(1).empty()) return Unsupported(node, "the indices output");
  Value out = in;
  out.h = win.out_h;
  out.w = win.out_w;
  out.tensor = Tensor(out.h, out.w, out.c);
  v1::Op* op = Op(in.tensor, out.tensor);
  out.producer = bundle_.backbone().ops_size() - 1;
  SetWindow(max ? op->mutable_max_pool() : op->mutable_average_pool(), win);
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

absl::Status OnnxConverter::GlobalPool(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
  if (!in.spatial) return Unsupported(node, "its input is not an image (N, C, H, W)");
  Value out = in;
  out.h = out.w = 1;
  out.tensor = Tensor(1, 1, out.c);
  Op(in.tensor, out.tensor)->mutable_global_average_pool();
  out.producer = bundle_.backbone().ops_size() - 1;
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

absl::Status OnnxConverter::AddOp(const onnx::NodeProto& node) {
  // MatMul + Add of a constant: the bias of the MatMul's FullyConnected.
  for (int i = 0; i < std::min(node.input_size(), 2); ++i) {
    const auto pending = pending_bias_.find(node.input(1 - i));
    const auto bias = initializers_.find(node.input(i));
    if (pending == pending_bias_.end() || bias == initializers_.end()) continue;
    v1::Op* op = bundle_.mutable_backbone()->mutable_ops(pending->second);
    if (uses_[node.input(1 - i)] != 1 ||
        bias->second.floats.size() != static_cast<size_t>(op->fully_connected().out_features())) {
      return Unsupported(node, "an Add after a MatMul must add one value per output, and be its only reader");
    }
    op->mutable_fully_connected()->mutable_weights()->mutable_float_bias()->Assign(bias->second.floats.begin(),
                                                                                   bias->second.floats.end());
    values_[node.output(0)] = values_.at(node.input(1 - i));
    pending_bias_.erase(pending);
    return absl::OkStatus();
  }
  TINYFED_ASSIGN_OR_RETURN(Value a, Input(node, 0));
  TINYFED_ASSIGN_OR_RETURN(Value b, Input(node, 1));
  if (a.c != b.c || a.h != b.h || a.w != b.w || a.chw_order != b.chw_order) {
    return Unsupported(node, "its inputs have different shapes (no broadcasting)");
  }
  Value out = a;
  out.tensor = Tensor(a.h, a.w, a.c);
  v1::Op* op = Op(a.tensor, out.tensor);
  op->add_inputs(static_cast<uint32_t>(b.tensor));
  op->mutable_add();
  out.producer = bundle_.backbone().ops_size() - 1;
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

absl::Status OnnxConverter::ConcatOp(const onnx::NodeProto& node) {
  constexpr int kMaxInputs = 64;  // as many as a bundle's Concat takes
  if (node.input_size() < 2 || node.input_size() > kMaxInputs) {
    return Unsupported(node,
                       StrCat(node.input_size(), " inputs (a Concat of activations takes 2 to ", kMaxInputs, ")"));
  }
  std::vector<Value> in;
  for (int i = 0; i < node.input_size(); ++i) {
    TINYFED_ASSIGN_OR_RETURN(Value v, Input(node, i));
    in.push_back(v);
  }
  const int64_t axis = IntAttribute(node, "axis", 0);
  const bool channels = in[0].spatial ? axis == 1 || axis == -3 : axis == 1 || axis == -1;
  if (!channels) return Unsupported(node, StrCat("axis ", axis, " (only the channel axis, 1)"));
  Value out = in[0];
  out.c = 0;
  for (const Value& v : in) {
    if (v.spatial != in[0].spatial || v.h != in[0].h || v.w != in[0].w) {
      return Unsupported(node, "its inputs differ in more than their channels");
    }
    // A flattened map is a row in ONNX's C, H, W order; a Gemm reading the
    // joined rows would need each part reordered on its own.
    if (!v.spatial && v.chw_order) return Unsupported(node, "an input is a flattened map (concatenate before Flatten)");
    out.c += v.c;
  }
  out.tensor = Tensor(out.h, out.w, out.c);
  v1::Op* op = Op(in[0].tensor, out.tensor);
  for (size_t i = 1; i < in.size(); ++i) op->add_inputs(static_cast<uint32_t>(in[i].tensor));
  op->mutable_concat();
  out.producer = bundle_.backbone().ops_size() - 1;
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

absl::Status OnnxConverter::FlattenOp(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
  if (node.op_type() == "Flatten" && IntAttribute(node, "axis", 1) != 1) return Unsupported(node, "axis other than 1");
  if (node.op_type() == "Reshape") {
    const auto it = node.input_size() > 1 ? initializers_.find(node.input(1)) : initializers_.end();
    const int64_t flat = int64_t{in.c} * in.h * in.w;
    if (it == initializers_.end() || it->second.ints.size() != 2 ||
        (it->second.ints[0] != 1 && it->second.ints[0] != -1 && it->second.ints[0] != 0) ||
        (it->second.ints[1] != -1 && it->second.ints[1] != flat)) {
      return Unsupported(node, "a Reshape other than to [N, -1] (a constant shape)");
    }
  }
  Value out = in;
  out.spatial = false;
  out.chw_order = in.spatial && in.h * in.w > 1;
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

absl::StatusOr<OnnxConverter::DenseWeights> OnnxConverter::DenseOf(const onnx::NodeProto& node, const Value& in) const {
  TINYFED_ASSIGN_OR_RETURN(const Initializer* b, Weight(node, 1));
  const bool gemm = node.op_type() == "Gemm";
  if (gemm && (FloatAttribute(node, "alpha", 1.0f) != 1.0f || FloatAttribute(node, "beta", 1.0f) != 1.0f ||
               IntAttribute(node, "transA", 0) != 0)) {
    return Unsupported(node, "alpha, beta other than 1 or transA");
  }
  const bool trans = gemm && IntAttribute(node, "transB", 0) != 0;
  if (b->dims.size() != 2) return Unsupported(node, "the weights are not 2-D");
  const int features = in.c * in.h * in.w;
  DenseWeights d;
  d.in = static_cast<int>(trans ? b->dims[1] : b->dims[0]);
  d.out = static_cast<int>(trans ? b->dims[0] : b->dims[1]);
  if (d.in != features)
    return Unsupported(node, StrCat("the weights read ", d.in, " features, the input has ", features));
  d.w = internal::DenseRowsInHwcOrder(b->floats, trans, d.out, in.c, in.h, in.w, in.chw_order);
  d.bias.assign(static_cast<size_t>(d.out), 0.0f);
  if (gemm && node.input_size() > 2 && !node.input(2).empty()) {
    TINYFED_ASSIGN_OR_RETURN(const Initializer* c, Weight(node, 2));
    if (c->floats.size() != d.bias.size()) return Unsupported(node, "the bias must hold one value per output");
    d.bias = c->floats;
  }
  return d;
}

absl::Status OnnxConverter::Dense(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
  TINYFED_ASSIGN_OR_RETURN(DenseWeights d, DenseOf(node, in));
  Value out{
      .tensor = Tensor(1, 1, d.out), .c = d.out, .h = 1, .w = 1, .spatial = false, .producer = 0, .chw_order = false};
  v1::Op* op = Op(in.tensor, out.tensor);
  out.producer = bundle_.backbone().ops_size() - 1;
  auto* fc = op->mutable_fully_connected();
  fc->set_out_features(static_cast<uint32_t>(d.out));
  for (int v : {d.out, d.in}) fc->mutable_weights()->add_dims(static_cast<uint32_t>(v));
  fc->mutable_weights()->mutable_float_values()->Assign(d.w.begin(), d.w.end());
  fc->mutable_weights()->mutable_float_bias()->Assign(d.bias.begin(), d.bias.end());
  RememberWeightScales(node, out.producer, d.out);
  values_[node.output(0)] = out;
  if (node.op_type() == "MatMul") pending_bias_[node.output(0)] = out.producer;
  return absl::OkStatus();
}

absl::Status OnnxConverter::PadOp(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0, /*padded_ok=*/true));
  const std::string mode = StringAttribute(node, "mode");
  if (!mode.empty() && mode != "constant") return Unsupported(node, StrCat("mode ", mode, " (only constant zeros)"));
  std::vector<int64_t> pads = IntsAttribute(node, "pads");  // before opset 11
  if (node.input_size() > 1 && !node.input(1).empty()) {
    const auto it = initializers_.find(node.input(1));
    if (it == initializers_.end() || it->second.is_float) return Unsupported(node, "pads that are not a constant");
    pads = it->second.ints;
  }
  if (node.input_size() > 2 && !node.input(2).empty()) {
    const auto it = initializers_.find(node.input(2));
    if (it == initializers_.end() || it->second.count() != 1 ||
        (it->second.is_float ? it->second.floats[0] != 0.0f : it->second.ints[0] != 0)) {
      return Unsupported(node, "a pad value other than a constant 0");
    }
  }
  if (node.input_size() > 3 && !node.input(3).empty()) return Unsupported(node, "the axes input");
  // [N, C, H, W] begins, then ends: only H and W, by 0 to 255.
  if (!in.spatial || pads.size() != 8 || pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 ||
      std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p < 0 || p > 255; })) {
    return Unsupported(node, "a Pad other than of an image's height and width by 0 to 255");
  }
  Value out = in;
  const std::array<int64_t, 4> added = {pads[2], pads[3], pads[6], pads[7]};
  for (size_t i = 0; i < 4; ++i) out.pads[i] += added[i];
  values_[node.output(0)] = out;
  return absl::OkStatus();
}

}  // namespace tinyfed::model_import::internal
