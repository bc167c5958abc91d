#include "models/testing/random_bundle.h"

#include <cmath>

#include "models/internal/graph.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::models::testing {
namespace {

int Uniform(std::mt19937& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
float UniformF(std::mt19937& rng, float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

int AddTensor(v1::Graph* g, int h, int w, int c, std::mt19937& rng) {
  auto* t = g->add_tensors();
  t->mutable_shape()->set_height(static_cast<uint32_t>(h));
  t->mutable_shape()->set_width(static_cast<uint32_t>(w));
  t->mutable_shape()->set_channels(static_cast<uint32_t>(c));
  t->set_scale(UniformF(rng, 0.005f, 0.1f));
  t->set_zero_point(Uniform(rng, -128, 127));
  return g->tensors_size() - 1;
}

int OutSize(int in, int k, int s, v1::Padding p, int before, int after) {
  if (p == v1::PADDING_SAME) return (in + s - 1) / s;
  if (p == v1::PADDING_EXPLICIT) return (in + before + after - k) / s + 1;
  return (in - k) / s + 1;
}

void FillWeights(v1::Weights* w, std::initializer_list<int> dims, int channels, std::mt19937& rng) {
  size_t count = 1;
  for (int d : dims) {
    w->add_dims(static_cast<uint32_t>(d));
    count *= static_cast<size_t>(d);
  }
  std::string values(count, '\0');
  for (auto& v : values) v = static_cast<char>(Uniform(rng, -127, 127));
  w->set_int8_values(values);
  for (int c = 0; c < channels; ++c) {
    const float s = UniformF(rng, 0.001f, 0.02f);
    w->add_channel_scales(s);
    // Bias of the order of the accumulator spread, as trained models have.
    const int spread = static_cast<int>(74.0 * 73.0 * std::sqrt(static_cast<double>(count) / channels));
    w->add_int32_bias(Uniform(rng, -spread, spread));
  }
}

template <typename P>
void SetWindow(P* p, const ConvSpec& s) {
  p->set_kernel_height(static_cast<uint32_t>(s.kernel_h));
  p->set_kernel_width(static_cast<uint32_t>(s.kernel_w));
  p->set_stride_height(static_cast<uint32_t>(s.stride_h));
  p->set_stride_width(static_cast<uint32_t>(s.stride_w));
  p->set_padding(s.padding);
  if (s.padding == v1::PADDING_EXPLICIT) {
    p->mutable_pads()->set_top(static_cast<uint32_t>(s.pad_top));
    p->mutable_pads()->set_bottom(static_cast<uint32_t>(s.pad_bottom));
    p->mutable_pads()->set_left(static_cast<uint32_t>(s.pad_left));
    p->mutable_pads()->set_right(static_cast<uint32_t>(s.pad_right));
  }
}

// For an op of two operands: drops the op just begun, appends a 1x1 `kind`
// op of the input (stride 1, VALID: the input's height and width; the rest
// as `pointwise` says), then begins an op reading the input and that op's
// output with `activation`, for the caller to finish.
v1::Op* ReadingInputAndPointwise(v1::ModelBundle* bundle, v1::Op::KindCase kind, int input, ConvSpec pointwise,
                                 v1::Activation activation, std::mt19937& rng) {
  v1::Graph* g = bundle->mutable_backbone();
  g->mutable_ops()->RemoveLast();
  pointwise.kernel_h = pointwise.kernel_w = pointwise.stride_h = pointwise.stride_w = 1;
  pointwise.padding = v1::PADDING_VALID;
  const int other = AppendRandomOp(bundle, kind, input, pointwise, rng);
  v1::Op* op = g->add_ops();
  op->add_inputs(static_cast<uint32_t>(input));
  op->add_inputs(static_cast<uint32_t>(other));
  op->set_activation(activation);
  return op;
}

}  // namespace

int AppendRandomOp(v1::ModelBundle* bundle, v1::Op::KindCase kind, int input, const ConvSpec& spec, std::mt19937& rng) {
  v1::Graph* g = bundle->mutable_backbone();
  const v1::Tensor in = g->tensors(input);
  const int h = static_cast<int>(in.shape().height()), w = static_cast<int>(in.shape().width()),
            c = static_cast<int>(in.shape().channels());
  const int oh = OutSize(h, spec.kernel_h, spec.stride_h, spec.padding, spec.pad_top, spec.pad_bottom);
  const int ow = OutSize(w, spec.kernel_w, spec.stride_w, spec.padding, spec.pad_left, spec.pad_right);
  auto* op = g->add_ops();
  op->add_inputs(static_cast<uint32_t>(input));
  op->set_activation(spec.activation);
  int out = 0;
  switch (kind) {
    case v1::Op::kConv2D: {
      out = AddTensor(g, oh, ow, spec.out_c, rng);
      auto* p = op->mutable_conv2d();
      p->set_out_channels(static_cast<uint32_t>(spec.out_c));
      SetWindow(p, spec);
      FillWeights(p->mutable_weights(), {spec.out_c, spec.kernel_h, spec.kernel_w, c}, spec.out_c, rng);
      break;
    }
    case v1::Op::kDepthwiseConv2D: {
      out = AddTensor(g, oh, ow, c, rng);
      auto* p = op->mutable_depthwise_conv2d();
      SetWindow(p, spec);
      FillWeights(p->mutable_weights(), {spec.kernel_h, spec.kernel_w, c}, c, rng);
      break;
    }
    case v1::Op::kFullyConnected: {
      out = AddTensor(g, 1, 1, spec.out_c, rng);
      auto* p = op->mutable_fully_connected();
      p->set_out_features(static_cast<uint32_t>(spec.out_c));
      FillWeights(p->mutable_weights(), {spec.out_c, h * w * c}, spec.out_c, rng);
      break;
    }
    case v1::Op::kMaxPool:
    case v1::Op::kAveragePool: {
      out = AddTensor(g, oh, ow, c, rng);
      SetWindow(kind == v1::Op::kMaxPool ? op->mutable_max_pool() : op->mutable_average_pool(), spec);
      break;
    }
    case v1::Op::kGlobalAveragePool:
      out = AddTensor(g, 1, 1, c, rng);
      op->mutable_global_average_pool();
      break;
    case v1::Op::kAdd: {
      // Second operand: the input requantized through a 1x1 depthwise conv.
      ConvSpec one = spec;
      one.activation = v1::ACTIVATION_NONE;
      op = ReadingInputAndPointwise(bundle, v1::Op::kDepthwiseConv2D, input, one, spec.activation, rng);
      out = AddTensor(g, h, w, c, rng);
      op->mutable_add();
      break;
    }
    case v1::Op::kReshape:
      out = AddTensor(g, 1, 1, h * w * c, rng);
      op->mutable_reshape();
      break;
    case v1::Op::kConcat: {
      // The input beside a 1x1 conv of it with out_c channels; half the time
      // the output keeps the input's scale, so that part is a plain copy.
      op = ReadingInputAndPointwise(bundle, v1::Op::kConv2D, input, spec, spec.activation, rng);
      out = AddTensor(g, h, w, c + spec.out_c, rng);
      if (rng() % 2 == 0) {
        g->mutable_tensors(out)->set_scale(in.scale());
        g->mutable_tensors(out)->set_zero_point(in.zero_point());
      }
      op->mutable_concat();
      break;
    }
    case v1::Op::KIND_NOT_SET:
      break;
  }
  if (kind == v1::Op::kMaxPool || kind == v1::Op::kAveragePool || kind == v1::Op::kGlobalAveragePool ||
      kind == v1::Op::kReshape) {
    g->mutable_tensors(out)->set_scale(in.scale());
    g->mutable_tensors(out)->set_zero_point(in.zero_point());
  }
  if (kind == v1::Op::kConv2D || kind == v1::Op::kDepthwiseConv2D || kind == v1::Op::kFullyConnected) {
    // Scale the output to the accumulators' spread (~74 * 73 * sqrt(depth)
    // for uniform inputs and weights) so that most outputs land inside the
    // int8 range instead of saturating.
    const v1::Weights& wts = kind == v1::Op::kConv2D           ? op->conv2d().weights()
                             : kind == v1::Op::kFullyConnected ? op->fully_connected().weights()
                                                               : op->depthwise_conv2d().weights();
    const double depth = static_cast<double>(wts.int8_values().size()) / wts.channel_scales_size();
    const double spread = 74.0 * 73.0 * std::sqrt(depth);
    g->mutable_tensors(out)->set_scale(
        static_cast<float>(in.scale() * 0.01 * spread / 40.0 * UniformF(rng, 0.5f, 2.0f)));
  }
  op->set_output(static_cast<uint32_t>(out));
  g->set_output(static_cast<uint32_t>(out));
  return out;
}

void FinishBundle(v1::ModelBundle* bundle, int num_classes, std::mt19937& rng) {
  bundle->set_format_version(kBundleFormatVersion);
  bundle->set_precision(v1::PRECISION_INT8);
  const v1::Graph& g = bundle->backbone();
  *bundle->mutable_input()->mutable_shape() = g.tensors(static_cast<int>(g.input())).shape();
  bundle->mutable_input()->add_mean(0.0f);
  bundle->mutable_input()->add_stddev(1.0f);
  auto* head = bundle->mutable_head();
  const uint64_t dim = internal::Elements(g.tensors(static_cast<int>(g.output())).shape());
  head->set_in_features(static_cast<uint32_t>(dim));
  head->set_num_classes(static_cast<uint32_t>(num_classes));
  for (uint64_t i = 0; i < dim * static_cast<uint64_t>(num_classes); ++i) {
    head->add_weights(UniformF(rng, -0.1f, 0.1f));
  }
  for (int c = 0; c < num_classes; ++c) {
    head->add_bias(0.0f);
    bundle->add_label_names("class" + std::to_string(c));
  }
  bundle->mutable_metadata()->set_name("random");
}

v1::ModelBundle RandomSingleOpBundle(v1::Op::KindCase kind, const ConvSpec& spec, std::mt19937& rng) {
  v1::ModelBundle bundle;
  v1::Graph* g = bundle.mutable_backbone();
  const int input = AddTensor(g, spec.in_h, spec.in_w, spec.in_c, rng);
  g->set_input(static_cast<uint32_t>(input));
  AppendRandomOp(&bundle, kind, input, spec, rng);
  FinishBundle(&bundle, 2, rng);
  return bundle;
}

}  // namespace tinyfed::models::testing
