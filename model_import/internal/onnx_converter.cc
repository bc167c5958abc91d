#include "model_import/internal/onnx_converter.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model_import/internal/onnx_constants.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/quantize.h"

namespace tinyfed::model_import::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

constexpr char kSupported[] =
    "supported: Conv (any group; grouped ones other than depthwise run dense), BatchNormalization after a Conv, Relu, "
    "Clip(0, 6), MaxPool, "
    "AveragePool, GlobalAveragePool, Add, Concat of channels, Flatten, Reshape to [N, -1], Gemm, MatMul(+Add), Softmax "
    "in the head, "
    "a constant zero Pad of H and W before a Conv; zero pads below the kernel; shape arithmetic on constants "
    "(Constant, Shape, ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast, Unsqueeze, Squeeze, Gather, int64 "
    "Add/Sub/Mul/Div); QuantizeLinear/DequantizeLinear per tensor on activations, per tensor or channel on weights";
// More than a backbone a gateway runs has (its graph takes 1,024 ops).
constexpr int kMaxNodes = 4096;

}  // namespace

OnnxConverter::OnnxConverter(const onnx::ModelProto& model, std::string source, const OnnxImportOptions& options)
    : model_(model), graph_(model.graph()), source_(std::move(source)), options_(options) {
  for (const auto& o : model.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = o.version();
  }
}

absl::StatusOr<v1::ModelBundle> OnnxConverter::Convert() {
  TINYFED_RETURN_IF_ERROR(CheckOptions());
  TINYFED_ASSIGN_OR_RETURN(initializers_, internal::ReadInitializers(graph_, source_, &constant_values_));
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
  TINYFED_RETURN_IF_ERROR(models::ValidateBundle(bundle_));
  if (!activation_quantization_.empty()) return QuantizeAsTheFileSays();
  return std::move(bundle_);
}

absl::Status OnnxConverter::CheckOptions() const {
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

std::string OnnxConverter::Where(const onnx::NodeProto& node) const {
  std::string name = node.name();
  if (name.empty() && node.output_size() > 0) name = node.output(0);
  return StrCat(source_, ": node ", Shown(name), " (", node.op_type(), ", opset ", opset_, ")");
}

absl::Status OnnxConverter::Unsupported(const onnx::NodeProto& node, const std::string& why) const {
  return InvalidArgumentError(StrCat(Where(node), ": ", why, "; ", kSupported));
}

std::string OnnxConverter::LastOutputs() const {
  std::vector<std::string> names;
  for (int i = std::max(0, graph_.node_size() - 5); i < graph_.node_size(); ++i) {
    for (const auto& o : graph_.node(i).output()) names.push_back(Shown(o));
  }
  return absl::StrJoin(names, ", ");
}

absl::Status OnnxConverter::DefineInput() {
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
    return InvalidArgumentError(StrCat(source_, ": input ", Shown(input->name()), " has shape [",
                                       absl::StrJoin(dims, ", "),
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

void OnnxConverter::CountUses() {
  for (const auto& node : graph_.node()) {
    for (const auto& in : node.input()) ++uses_[in];
  }
  for (const auto& out : graph_.output()) ++uses_[out.name()];
}

absl::StatusOr<Value> OnnxConverter::Input(const onnx::NodeProto& node, int i, bool padded_ok) const {
  if (i >= node.input_size()) return Unsupported(node, StrCat("input ", i, " is missing"));
  const auto it = values_.find(node.input(i));
  if (it == values_.end()) {
    return Unsupported(node, StrCat("input ", Shown(node.input(i)),
                                    initializers_.contains(node.input(i)) ? " is a weight where an activation belongs"
                                                                          : " is not computed by a supported node"));
  }
  if (it->second.padded() && !padded_ok) {
    return Unsupported(node, StrCat("input ", Shown(node.input(i)), " comes from a Pad, which only a Conv may read"));
  }
  return it->second;
}

absl::StatusOr<const Initializer*> OnnxConverter::Weight(const onnx::NodeProto& node, int i) const {
  if (i >= node.input_size()) return Unsupported(node, StrCat("input ", i, " is missing"));
  const auto it = initializers_.find(node.input(i));
  if (it == initializers_.end() || !it->second.is_float) {
    return Unsupported(node, StrCat("input ", Shown(node.input(i)), " must be a float32 initializer (weights)"));
  }
  return &it->second;
}

absl::Status OnnxConverter::ConvertNode(const onnx::NodeProto& node) {
  if (!node.domain().empty() && node.domain() != "ai.onnx") {
    return Unsupported(node, StrCat("domain ", Shown(node.domain()), " is not the standard one"));
  }
  if (node.output_size() < 1) return Unsupported(node, "it has no output");
  const std::string& op = node.op_type();
  if (op == "Shape") return ShapeOp(node);
  if (op == "QuantizeLinear" && values_.contains(node.input(0))) return QuantizeOp(node);
  if ((op == "DequantizeLinear" || op == "Cast") && node.input_size() > 0 && values_.contains(node.input(0))) {
    values_[node.output(0)] = values_.at(node.input(0));
    return absl::OkStatus();
  }
  if (IsFoldable(op) && AllInputsConstant(node)) return Fold(node);
  if (op == "Conv") return Conv(node);
  if (op == "BatchNormalization") return BatchNorm(node);
  if (op == "Relu" || op == "Clip") return Activation(node);
  if (op == "MaxPool" || op == "AveragePool") return Pool(node);
  if (op == "GlobalAveragePool") return GlobalPool(node);
  if (op == "Add") return AddOp(node);
  if (op == "Concat") return ConcatOp(node);
  if (op == "Flatten" || op == "Reshape") return FlattenOp(node);
  if (op == "Gemm" || op == "MatMul") return Dense(node);
  if (op == "Pad") return PadOp(node);
  if (op == "Dropout" || op == "Identity") {
    TINYFED_ASSIGN_OR_RETURN(Value v, Input(node, 0));
    values_[node.output(0)] = v;
    return absl::OkStatus();
  }
  return Unsupported(node, "this op is not supported");
}

bool OnnxConverter::AllInputsConstant(const onnx::NodeProto& node) const {
  return std::all_of(node.input().begin(), node.input().end(),
                     [&](const std::string& in) { return in.empty() || initializers_.contains(in); });
}

absl::Status OnnxConverter::Fold(const onnx::NodeProto& node) {
  std::vector<const Initializer*> inputs;
  for (const auto& in : node.input()) inputs.push_back(in.empty() ? nullptr : &initializers_.at(in));
  auto folded = FoldConstant(node, inputs, source_, &constant_values_);
  if (!folded.ok()) return Unsupported(node, std::string(folded.status().message()));
  initializers_[node.output(0)] = *std::move(folded);
  if (node.op_type() == "DequantizeLinear") dequantized_scales_[node.output(0)] = inputs[1]->floats;
  return absl::OkStatus();
}

absl::Status OnnxConverter::QuantizeOp(const onnx::NodeProto& node) {
  // A zero Pad may come first (torch.onnx pads in float, then quantizes):
  // its zeros quantize to the zero point, which the Conv pads with.
  TINYFED_ASSIGN_OR_RETURN(Value v, Input(node, 0, /*padded_ok=*/true));
  const auto constant = [&](int i) -> const Initializer* {
    if (i >= node.input_size() || node.input(i).empty()) return nullptr;
    const auto it = initializers_.find(node.input(i));
    return it == initializers_.end() ? nullptr : &it->second;
  };
  const Initializer* scale = constant(1);
  const Initializer* zero = constant(2);
  if (scale == nullptr || !scale->is_float || scale->floats.size() != 1 || !(scale->floats[0] > 0.0f) ||
      (zero != nullptr && (zero->is_float || zero->ints.size() != 1))) {
    return Unsupported(node,
                       "an activation's QuantizeLinear needs a constant positive scale and zero point, per tensor");
  }
  models::AffineQuantization q{.scale = scale->floats[0], .zero_point = 0};
  if (zero != nullptr) q.zero_point = static_cast<int32_t>(zero->ints[0] - (zero->is_uint8 ? 128 : 0));
  if (q.zero_point < -128 || q.zero_point > 127) return Unsupported(node, "a zero point outside int8 and uint8");
  activation_quantization_[v.tensor] = q;
  values_[node.output(0)] = v;
  return absl::OkStatus();
}

void OnnxConverter::RememberWeightScales(const onnx::NodeProto& node, int op, int channels) {
  const auto it = node.input_size() > 1 ? dequantized_scales_.find(node.input(1)) : dequantized_scales_.end();
  if (it == dequantized_scales_.end()) return;
  std::vector<float> scales = it->second;
  if (scales.size() == 1) scales.assign(static_cast<size_t>(channels), scales[0]);
  weight_scales_[op] = scales;
}

absl::StatusOr<v1::ModelBundle> OnnxConverter::QuantizeAsTheFileSays() const {
  models::GivenQuantization given;
  const v1::Graph& g = bundle_.backbone();
  given.tensors.resize(static_cast<size_t>(g.tensors_size()));
  std::vector<bool> known(given.tensors.size(), false);
  for (const auto& [t, q] : activation_quantization_) {
    given.tensors[static_cast<size_t>(t)] = q;
    known[static_cast<size_t>(t)] = true;
  }
  // Pools and reshapes keep their input's quantization, as the engine requires.
  for (const v1::Op& op : g.ops()) {
    const bool shares = op.has_max_pool() || op.has_average_pool() || op.has_reshape();
    if (shares && !known[op.output()]) {
      given.tensors[op.output()] = given.tensors[op.inputs(0)];
      known[op.output()] = known[op.inputs(0)];
    }
  }
  for (size_t t = 0; t < known.size(); ++t) {
    if (!known[t]) {
      return InvalidArgumentError(StrCat(source_, ": a QDQ model, but tensor ", t,
                                         " of the backbone has no QuantizeLinear; quantize every activation"));
    }
  }
  given.weight_scales = weight_scales_;
  auto int8 = models::QuantizeAsGiven(bundle_, given);
  if (!int8.ok()) return InvalidArgumentError(StrCat(source_, ": ", int8.status().message()));
  return int8;
}

absl::Status OnnxConverter::ShapeOp(const onnx::NodeProto& node) {
  TINYFED_ASSIGN_OR_RETURN(Value v, Input(node, 0));
  Initializer shape;
  shape.is_float = false;
  shape.ints = v.spatial ? std::vector<int64_t>{1, v.c, v.h, v.w} : std::vector<int64_t>{1, int64_t{v.c} * v.h * v.w};
  shape.dims = {static_cast<int64_t>(shape.ints.size())};
  if (IntAttribute(node, "start", 0) != 0 || IntAttribute(node, "end", INT64_MAX) != INT64_MAX) {
    return Unsupported(node, "a Shape with start or end");
  }
  initializers_[node.output(0)] = std::move(shape);
  return absl::OkStatus();
}

absl::Status OnnxConverter::BuildHead(const Value& embedding, int next) {
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
    if (graph_.node(n).op_type() == "Flatten" && IntAttribute(graph_.node(n), "axis", 1) != 1) return absl::OkStatus();
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
  if (!dense.ok()) return dense.status();
  if (dense->out != static_cast<int>(options_.labels.size())) {
    return InvalidArgumentError(StrCat(Where(node), ": the head after the embedding has ", dense->out, " outputs but ",
                                       options_.labels.size(), " labels were given"));
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

void OnnxConverter::Finish() {
  bundle_.set_format_version(models::kBundleFormatVersion);
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

int OnnxConverter::Tensor(int h, int w, int c) {
  auto* t = bundle_.mutable_backbone()->add_tensors();
  t->mutable_shape()->set_height(static_cast<uint32_t>(h));
  t->mutable_shape()->set_width(static_cast<uint32_t>(w));
  t->mutable_shape()->set_channels(static_cast<uint32_t>(c));
  return bundle_.backbone().tensors_size() - 1;
}

v1::Op* OnnxConverter::Op(int in, int out) {
  v1::Op* op = bundle_.mutable_backbone()->add_ops();
  op->add_inputs(static_cast<uint32_t>(in));
  op->set_output(static_cast<uint32_t>(out));
  op->set_activation(v1::ACTIVATION_NONE);
  return op;
}

}  // namespace tinyfed::model_import::internal
