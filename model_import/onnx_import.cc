#include "tinyfed/model_import/onnx_import.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model_import/internal/onnx_layouts.h"
#include "model_import/internal/onnx_parts.h"
#include "model_import/internal/onnx_window.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::model_import {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;
using models::kBundleFormatVersion;
using models::ValidateBundle;

constexpr char kSupported[] =
    "supported: Conv (groups 1 or depthwise), BatchNormalization after a Conv, Relu, Clip(0, 6), MaxPool, "
    "AveragePool, GlobalAveragePool, Add, Flatten, Reshape to [N, -1], Gemm, MatMul(+Add), Softmax in the head; "
    "zero pads below the kernel";
// More than a backbone a gateway runs has (its graph takes 1,024 ops).
constexpr int kMaxNodes = 4096;

using internal::FloatAttribute;
using internal::Initializer;
using internal::IntAttribute;
using internal::IntsAttribute;
using internal::SetWindow;
using internal::Shown;
using internal::StringAttribute;
using internal::Window;

// A converted value: a tinyfed tensor holding an ONNX tensor. Spatial values
// are NCHW in ONNX and HWC here; a value flattened from a spatial one keeps
// its source dims, so that a Gemm reading it can reorder its weights.
struct Value {
  int tensor = -1;
  int c = 1, h = 1, w = 1;
  bool spatial = false;
  int producer = -1;       // tinyfed op index, -1 for the graph input
  bool chw_order = false;  // flat, in ONNX's C, H, W order of (c, h, w)
};

class OnnxConverter {
 public:
  OnnxConverter(const onnx::ModelProto& model, std::string source, const OnnxImportOptions& options)
      : model_(model), graph_(model.graph()), source_(std::move(source)), options_(options) {
    for (const auto& o : model.opset_import()) {
      if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = o.version();
    }
  }

  absl::StatusOr<v1::ModelBundle> Convert() {
    TINYFED_RETURN_IF_ERROR(CheckOptions());
    TINYFED_ASSIGN_OR_RETURN(initializers_, internal::ReadInitializers(graph_, source_));
    TINYFED_RETURN_IF_ERROR(DefineInput());
    CountUses();
    bool named = false;
    for (const auto& node : graph_.node()) {
      named = named || std::find(node.output().begin(), node.output().end(), options_.embedding) != node.output().end();
    }
    if (!named) {
      return InvalidArgumentError(StrCat(source_, ": no node output is named ", Shown(options_.embedding),
                                         " (--embedding); outputs of the last nodes: ", LastOutputs()));
    }
    int n = 0;
    for (; n < graph_.node_size() && !values_.contains(options_.embedding); ++n) {
      TINYFED_RETURN_IF_ERROR(ConvertNode(graph_.node(n)));
    }
    if (!values_.contains(options_.embedding)) {
      return InvalidArgumentError(StrCat(source_, ": no node output is named ", Shown(options_.embedding),
                                         " (--embedding); outputs of the last nodes: ", LastOutputs()));
    }
    const Value& embedding = values_.at(options_.embedding);
    if (embedding.producer < 0) {
      return InvalidArgumentError(StrCat(source_, ": the embedding ", Shown(options_.embedding),
                                         " is the model's input; name a tensor after at least one node"));
    }
    bundle_.mutable_backbone()->set_output(static_cast<uint32_t>(embedding.tensor));
    TINYFED_RETURN_IF_ERROR(BuildHead(embedding, n));
    Finish();
    TINYFED_RETURN_IF_ERROR(ValidateBundle(bundle_));
    return std::move(bundle_);
  }

 private:
  absl::Status CheckOptions() const {
    if (options_.embedding.empty()) return InvalidArgumentError("name the embedding tensor (--embedding)");
    if (options_.labels.size() < 2) return InvalidArgumentError("give the class names, 2 or more (--labels)");
    if (options_.mean.size() != options_.stddev.size()) {
      return InvalidArgumentError(StrCat("the input spec has ", options_.mean.size(), " means and ",
                                         options_.stddev.size(), " standard deviations"));
    }
    if (graph_.node_size() > kMaxNodes) {
      return InvalidArgumentError(
          StrCat(source_, " has ", graph_.node_size(), " nodes, more than ", kMaxNodes, " a gateway runs"));
    }
    return absl::OkStatus();
  }

  std::string Where(const onnx::NodeProto& node) const {
    std::string name = node.name();
    if (name.empty() && node.output_size() > 0) name = node.output(0);
    return StrCat(source_, ": node ", Shown(name), " (", node.op_type(), ", opset ", opset_, ")");
  }

  absl::Status Unsupported(const onnx::NodeProto& node, const std::string& why) const {
    return InvalidArgumentError(StrCat(Where(node), ": ", why, "; ", kSupported));
  }

  std::string LastOutputs() const {
    std::vector<std::string> names;
    for (int i = std::max(0, graph_.node_size() - 5); i < graph_.node_size(); ++i) {
      for (const auto& o : graph_.node(i).output()) names.push_back(Shown(o));
    }
    return absl::StrJoin(names, ", ");
  }

  // The one graph input that is not a weight: NCHW or N x D, batch 1 or symbolic.
  absl::Status DefineInput() {
    const onnx::ValueInfoProto* input = nullptr;
    for (const auto& in : graph_.input()) {
      if (initializers_.contains(in.name())) continue;
      if (input != nullptr) {
        return InvalidArgumentError(StrCat(source_, ": the model has more than one input (", Shown(input->name()), ", ",
                                           Shown(in.name()), "); a backbone has one"));
      }
      input = &in;
    }
    if (input == nullptr) return InvalidArgumentError(StrCat(source_, ": the model has no input"));
    const auto& type = input->type().tensor_type();
    if (type.elem_type() != onnx::TensorProto::FLOAT) {
      return InvalidArgumentError(StrCat(source_, ": input ", Shown(input->name()), " is not float32"));
    }
    std::vector<int64_t> dims;
    for (int i = 0; i < type.shape().dim_size(); ++i) {
      const auto& d = type.shape().dim(i);
      dims.push_back(d.has_dim_value() ? d.dim_value() : (i == 0 ? 1 : -1));
    }
    const bool known = std::all_of(dims.begin(), dims.end(), [](int64_t d) { return d >= 1 && d <= 65535; });
    if (!known || (dims.size() != 4 && dims.size() != 2) || dims[0] != 1) {
      return InvalidArgumentError(
          StrCat(source_, ": input ", Shown(input->name()), " has shape [", absl::StrJoin(dims, ", "),
                 "]; a backbone takes [N, C, H, W] or [N, D] with known sizes (-1 is unknown)"));
    }
    Value v;
    if (dims.size() == 4) {
      v.c = static_cast<int>(dims[1]);
      v.h = static_cast<int>(dims[2]);
      v.w = static_cast<int>(dims[3]);
      v.spatial = true;
    } else {
      v.c = static_cast<int>(dims[1]);
    }
    v.tensor = Tensor(v.h, v.w, v.c);
    bundle_.mutable_backbone()->set_input(static_cast<uint32_t>(v.tensor));
    values_[input->name()] = v;
    return absl::OkStatus();
  }

  void CountUses() {
    for (const auto& node : graph_.node()) {
      for (const auto& in : node.input()) ++uses_[in];
    }
    for (const auto& out : graph_.output()) ++uses_[out.name()];
  }

  absl::StatusOr<Value> Input(const onnx::NodeProto& node, int i) const {
    if (i >= node.input_size()) return Unsupported(node, StrCat("input ", i, " is missing"));
    const auto it = values_.find(node.input(i));
    if (it == values_.end()) {
      return Unsupported(node, StrCat("input ", Shown(node.input(i)),
                                      initializers_.contains(node.input(i)) ? " is a weight where an activation belongs"
                                                                            : " is not computed by a supported node"));
    }
    return it->second;
  }

  absl::StatusOr<const Initializer*> Weight(const onnx::NodeProto& node, int i) const {
    if (i >= node.input_size()) return Unsupported(node, StrCat("input ", i, " is missing"));
    const auto it = initializers_.find(node.input(i));
    if (it == initializers_.end() || it->second.floats.empty()) {
      return Unsupported(node, StrCat("input ", Shown(node.input(i)), " must be a float32 initializer (weights)"));
    }
    return &it->second;
  }

  absl::Status ConvertNode(const onnx::NodeProto& node) {
    if (!node.domain().empty() && node.domain() != "ai.onnx") {
      return Unsupported(node, StrCat("domain ", Shown(node.domain()), " is not the standard one"));
    }
    if (node.output_size() < 1) return Unsupported(node, "it has no output");
    const std::string& op = node.op_type();
    if (op == "Conv") return Conv(node);
    if (op == "BatchNormalization") return BatchNorm(node);
    if (op == "Relu" || op == "Clip") return Activation(node);
    if (op == "MaxPool" || op == "AveragePool") return Pool(node);
    if (op == "GlobalAveragePool") return GlobalPool(node);
    if (op == "Add") return AddOp(node);
    if (op == "Flatten" || op == "Reshape") return FlattenOp(node);
    if (op == "Gemm" || op == "MatMul") return Dense(node);
    if (op == "Dropout" || op == "Identity") {
      TINYFED_ASSIGN_OR_RETURN(Value v, Input(node, 0));
      values_[node.output(0)] = v;
      return absl::OkStatus();
    }
    return Unsupported(node, "this op is not supported");
  }

  absl::Status Conv(const onnx::NodeProto& node) {
    TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
    TINYFED_ASSIGN_OR_RETURN(const Initializer* w, Weight(node, 1));
    if (!in.spatial) return Unsupported(node, "its input is not an image (N, C, H, W)");
    if (w->dims.size() != 4) return Unsupported(node, "the weights are not 4-D (O, I, kH, kW)");
    const int out_c = static_cast<int>(w->dims[0]);
    const int group = static_cast<int>(IntAttribute(node, "group", 1));
    const bool depthwise = group > 1 && group == in.c && out_c == in.c && w->dims[1] == 1;
    if (group != 1 && !depthwise) {
      return Unsupported(node, StrCat("group ", group, " with ", in.c, " input and ", out_c,
                                      " output channels (only 1, or depthwise with multiplier 1)"));
    }
    if (!depthwise && w->dims[1] != in.c) {
      return Unsupported(node, StrCat("the weights read ", w->dims[1], " channels, the input has ", in.c));
    }
    std::vector<int64_t> kernel = IntsAttribute(node, "kernel_shape");
    if (kernel.empty()) kernel = {w->dims[2], w->dims[3]};
    if (kernel.size() != 2 || kernel[0] != w->dims[2] || kernel[1] != w->dims[3])
      return Unsupported(node, "kernel_shape differs from the weights");
    auto window = internal::WindowOf(node, in.h, in.w, kernel);
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
      const std::vector<float> ohwi = internal::OhwiFromOihw(w->floats, out_c, ic, kh, kw);
      weights->mutable_float_values()->Assign(ohwi.begin(), ohwi.end());
    }
    weights->mutable_float_bias()->Assign(bias.begin(), bias.end());
    values_[node.output(0)] = out;
    return absl::OkStatus();
  }

  // The producer of `v` may take `node` into itself: no activation yet, and
  // `node` is the only reader of its output.
  absl::StatusOr<v1::Op*> Fusable(const onnx::NodeProto& node, const Value& v) {
    if (v.producer < 0 || uses_[node.input(0)] != 1) {
      return Unsupported(node, "it must follow a Conv, Gemm, pooling or Add whose output it alone reads");
    }
    v1::Op* op = bundle_.mutable_backbone()->mutable_ops(v.producer);
    if (op->activation() != v1::ACTIVATION_NONE) return Unsupported(node, "its input already has an activation");
    return op;
  }

  absl::Status BatchNorm(const onnx::NodeProto& node) {
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

  absl::Status Activation(const onnx::NodeProto& node) {
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

  absl::Status Pool(const onnx::NodeProto& node) {
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

  absl::Status GlobalPool(const onnx::NodeProto& node) {
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

  absl::Status AddOp(const onnx::NodeProto& node) {
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

  // Flatten(axis 1) or Reshape to [N, -1]: the same values in a row, read
  // by a Gemm in ONNX's C, H, W order (its weights are reordered for it).
  absl::Status FlattenOp(const onnx::NodeProto& node) {
    TINYFED_ASSIGN_OR_RETURN(Value in, Input(node, 0));
    if (node.op_type() == "Flatten" && IntAttribute(node, "axis", 1) != 1)
      return Unsupported(node, "axis other than 1");
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

  // Gemm (alpha = beta = 1) or MatMul, with a following Add of a bias fused.
  struct DenseWeights {
    int out = 0, in = 0;
    std::vector<float> w;  // out x in, row-major, in tinyfed's input order
    std::vector<float> bias;
  };

  absl::StatusOr<DenseWeights> DenseOf(const onnx::NodeProto& node, const Value& in) const {
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

  absl::Status Dense(const onnx::NodeProto& node) {
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
    values_[node.output(0)] = out;
    if (node.op_type() == "MatMul") pending_bias_[node.output(0)] = out.producer;
    return absl::OkStatus();
  }

  // What follows the embedding: one Gemm or MatMul (+Add) (+Softmax) is the
  // initial head, anything else leaves it at zero.
  absl::Status BuildHead(const Value& embedding, int next) {
    v1::Head* head = bundle_.mutable_head();
    const int features = embedding.c * embedding.h * embedding.w;
    head->set_in_features(static_cast<uint32_t>(features));
    head->set_num_classes(static_cast<uint32_t>(options_.labels.size()));
    head->mutable_weights()->Resize(features * static_cast<int>(options_.labels.size()), 0.0f);
    head->mutable_bias()->Resize(static_cast<int>(options_.labels.size()), 0.0f);
    Value reader = embedding;
    std::string name = options_.embedding;
    int n = next;
    if (n < graph_.node_size() && (graph_.node(n).op_type() == "Flatten" || graph_.node(n).op_type() == "Reshape") &&
        graph_.node(n).input(0) == name) {
      if (graph_.node(n).op_type() == "Flatten" && IntAttribute(graph_.node(n), "axis", 1) != 1)
        return absl::OkStatus();
      reader.chw_order = embedding.spatial && embedding.h * embedding.w > 1;
      name = graph_.node(n).output(0);
      ++n;
    }
    if (n >= graph_.node_size()) return absl::OkStatus();
    const onnx::NodeProto& node = graph_.node(n);
    if ((node.op_type() != "Gemm" && node.op_type() != "MatMul") || node.input(0) != name) return absl::OkStatus();
    // The head is the whole rest: the dense layer, its bias Add after a
    // MatMul, and at most a Softmax.
    int rest = n + 1;
    if (node.op_type() == "MatMul" && rest < graph_.node_size() && graph_.node(rest).op_type() == "Add") ++rest;
    if (rest < graph_.node_size() && graph_.node(rest).op_type() == "Softmax") ++rest;
    if (rest != graph_.node_size()) return absl::OkStatus();
    auto dense = DenseOf(node, reader);
    if (!dense.ok() || dense->out != static_cast<int>(options_.labels.size())) {
      return InvalidArgumentError(
          StrCat(Where(node), ": the head after the embedding ",
                 dense.ok() ? StrCat("has ", dense->out, " outputs but ", options_.labels.size(), " labels were given")
                            : std::string(dense.status().message())));
    }
    if (node.op_type() == "MatMul" && n + 1 < graph_.node_size() && graph_.node(n + 1).op_type() == "Add") {
      const onnx::NodeProto& add = graph_.node(n + 1);
      const std::string& other = add.input(0) == node.output(0) ? add.input(1) : add.input(0);
      const auto it = initializers_.find(other);
      if (it != initializers_.end() && it->second.floats.size() == dense->bias.size()) dense->bias = it->second.floats;
    }
    head->mutable_weights()->Assign(dense->w.begin(), dense->w.end());
    head->mutable_bias()->Assign(dense->bias.begin(), dense->bias.end());
    return absl::OkStatus();
  }

  void Finish() {
    bundle_.set_format_version(kBundleFormatVersion);
    bundle_.set_precision(v1::PRECISION_FLOAT32);
    auto* input = bundle_.mutable_input();
    *input->mutable_shape() = bundle_.backbone().tensors(static_cast<int>(bundle_.backbone().input())).shape();
    if (options_.mean.empty()) {
      input->add_mean(0.0f);
      input->add_stddev(1.0f);
    } else {
      input->mutable_mean()->Assign(options_.mean.begin(), options_.mean.end());
      input->mutable_stddev()->Assign(options_.stddev.begin(), options_.stddev.end());
    }
    for (const auto& l : options_.labels) bundle_.add_label_names(l);
    auto* meta = bundle_.mutable_metadata();
    meta->set_name(options_.name.empty() ? std::filesystem::path(source_).stem().string() : options_.name);
    meta->set_version(1);
    meta->set_architecture(StrCat("onnx:", model_.producer_name().substr(0, 40), " opset ", opset_));
    meta->mutable_training_data()->set_source(source_);
  }

  int Tensor(int h, int w, int c) {
    auto* t = bundle_.mutable_backbone()->add_tensors();
    t->mutable_shape()->set_height(static_cast<uint32_t>(h));
    t->mutable_shape()->set_width(static_cast<uint32_t>(w));
    t->mutable_shape()->set_channels(static_cast<uint32_t>(c));
    return bundle_.backbone().tensors_size() - 1;
  }

  v1::Op* Op(int in, int out) {
    v1::Op* op = bundle_.mutable_backbone()->add_ops();
    op->add_inputs(static_cast<uint32_t>(in));
    op->set_output(static_cast<uint32_t>(out));
    op->set_activation(v1::ACTIVATION_NONE);
    return op;
  }

  const onnx::ModelProto& model_;
  const onnx::GraphProto& graph_;
  const std::string source_;
  const OnnxImportOptions& options_;
  int64_t opset_ = 0;
  std::map<std::string, Initializer> initializers_;
  std::map<std::string, Value> values_;
  std::map<std::string, int> uses_;
  std::map<std::string, int> pending_bias_;  // MatMul outputs awaiting their Add
  v1::ModelBundle bundle_;
};

}  // namespace

absl::StatusOr<v1::ModelBundle> ImportOnnxBytes(const std::string& bytes, const std::string& source,
                                                const OnnxImportOptions& options) {
  if (bytes.size() > kMaxOnnxFileBytes) {
    return absl::OutOfRangeError(
        StrCat(source, " is ", bytes.size(), " bytes, more than ", kMaxOnnxFileBytes, " a gateway's model may be"));
  }
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    return InvalidArgumentError(StrCat(source, " is not an ONNX model (a ModelProto)"));
  // ONNX's checker throws; a hostile file must only ever give an error.
  // ONNX's shape inference is not run: Debian's libonnx 1.12 divides by zero
  // on a Conv with stride 0 (fixed upstream in onnx/onnx#7764; found here by
  // fuzz/onnx_import_fuzz), and the conversion derives and checks every
  // shape itself.
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    return InvalidArgumentError(StrCat(source, " fails ONNX's checker: ", std::string(e.what()).substr(0, 300)));
  }
  return OnnxConverter(model, source, options).Convert();
}

absl::StatusOr<v1::ModelBundle> ImportOnnx(const std::filesystem::path& path, const OnnxImportOptions& options) {
  TINYFED_ASSIGN_OR_RETURN(std::string bytes, base::ReadFileBytes(path, kMaxOnnxFileBytes));
  return ImportOnnxBytes(bytes, path.string(), options);
}

}  // namespace tinyfed::model_import
