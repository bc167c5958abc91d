// Backpropagation checked against central finite differences on every op
// kind, and training checked to learn a separable problem.
#include "models/internal/float_network.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models::internal {
namespace {

Dataset RandomImages(int n, int h, int w, int c, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  Dataset d;
  d.height = h;
  d.width = w;
  d.channels = c;
  d.source = "synthetic";
  for (int k = 0; k < classes; ++k) d.label_names.push_back("c" + std::to_string(k));
  for (int i = 0; i < n; ++i) {
    const int label = i % classes;
    d.labels.push_back(label);
    // Class k brightens row band k, so the classes are separable.
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int ch = 0; ch < c; ++ch) d.features.push_back(noise(rng) + ((y * classes / h) == label ? 2.0f : 0.0f));
  }
  return d;
}

// Loss as a function of one parameter, for finite differences.
double Loss(FloatNetwork& net, const Dataset& d) {
  net.Forward(d.features, static_cast<int>(d.size()));
  double loss = 0.0;
  const auto classes = static_cast<size_t>(net.num_classes());
  for (size_t b = 0; b < d.size(); ++b) {
    const auto l = net.logits().subspan(b * classes, classes);
    double m = l[0];
    for (float v : l) m = std::max<double>(m, v);
    double total = 0.0;
    for (float v : l) total += std::exp(v - m);
    loss += std::log(total) - (l[static_cast<size_t>(d.labels[b])] - m);
  }
  return loss / static_cast<double>(d.size());
}

void CheckGradients(const v1::ModelBundle& bundle, const Dataset& d, const std::string& name) {
  // One SGD step with lr=h and no momentum moves each weight by -h * grad, so
  // comparing the bundle before and after gives the gradient for every weight.
  auto net = FloatNetwork::Create(bundle);
  ASSERT_TRUE(net.ok());
  net->Forward(d.features, static_cast<int>(d.size()));
  net->Backward(d.labels);
  const float step = 1.0f;
  net->Step(step, 0.0f, 0.0f);
  v1::ModelBundle after = bundle;
  net->WriteTo(&after);

  std::mt19937 rng(3);
  int checked = 0, agreed = 0;
  for (int i = 0; i < bundle.backbone().ops_size(); ++i) {
    const v1::Op& op = bundle.backbone().ops(i);
    const v1::Weights* w = op.has_conv2d()             ? &op.conv2d().weights()
                           : op.has_depthwise_conv2d() ? &op.depthwise_conv2d().weights()
                           : op.has_fully_connected()  ? &op.fully_connected().weights()
                                                       : nullptr;
    if (w == nullptr) continue;
    const v1::Op& op_after = after.backbone().ops(i);
    const v1::Weights* wa = op.has_conv2d()             ? &op_after.conv2d().weights()
                            : op.has_depthwise_conv2d() ? &op_after.depthwise_conv2d().weights()
                                                        : &op_after.fully_connected().weights();
    for (int trial = 0; trial < 8; ++trial) {
      const int k = std::uniform_int_distribution<int>(0, w->float_values_size() - 1)(rng);
      const double analytic = (w->float_values(k) - wa->float_values(k)) / step;
      const double h = 1e-3;
      auto perturbed = [&](double delta) {
        v1::ModelBundle b = bundle;
        v1::Op* mop = b.mutable_backbone()->mutable_ops(i);
        v1::Weights* mw = mop->has_conv2d()             ? mop->mutable_conv2d()->mutable_weights()
                          : mop->has_depthwise_conv2d() ? mop->mutable_depthwise_conv2d()->mutable_weights()
                                                        : mop->mutable_fully_connected()->mutable_weights();
        mw->set_float_values(k, static_cast<float>(mw->float_values(k) + delta));
        auto n = FloatNetwork::Create(b);
        return Loss(*n, d);
      };
      const double numeric = (perturbed(h) - perturbed(-h)) / (2 * h);
      if (std::fabs(analytic - numeric) <= 2e-3 + 0.05 * std::fabs(numeric)) ++agreed;
      ++checked;
    }
  }
  // A probe that straddles a ReLU or max-pool kink measures a one-sided
  // slope, so a few probes of a network with many kinks may miss.
  EXPECT_GE(agreed * 10, checked * 9) << agreed << " of " << checked << " probes agreed";

  // Along the whole gradient the signal is large: a step of -eps * g must
  // lower the loss by eps * |g|^2 to first order.
  // The step is scaled so the loss moves by about 1e-3: large against float
  // rounding, small against curvature. |g|^2 comes from the first network.
  double g2 = 0.0;
  for (int k = 0; k < bundle.head().weights_size(); ++k) {
    g2 += std::pow((bundle.head().weights(k) - after.head().weights(k)) / step, 2);
  }
  auto fresh = FloatNetwork::Create(bundle);
  const double before = Loss(*fresh, d);
  fresh->Backward(d.labels);
  const auto eps = static_cast<float>(1e-3 / std::max(g2, 1.0));
  fresh->Step(eps, 0.0f, 0.0f);
  v1::ModelBundle moved = bundle;
  fresh->WriteTo(&moved);
  double norm2 = 0.0;
  auto accumulate = [&](const auto& a, const auto& b) {
    for (int k = 0; k < a.size(); ++k) norm2 += std::pow((a.Get(k) - b.Get(k)) / eps, 2);
  };
  for (int i = 0; i < bundle.backbone().ops_size(); ++i) {
    const v1::Op& o0 = bundle.backbone().ops(i);
    const v1::Op& o1 = moved.backbone().ops(i);
    if (o0.has_conv2d()) {
      accumulate(o0.conv2d().weights().float_values(), o1.conv2d().weights().float_values());
      accumulate(o0.conv2d().weights().float_bias(), o1.conv2d().weights().float_bias());
    } else if (o0.has_depthwise_conv2d()) {
      accumulate(o0.depthwise_conv2d().weights().float_values(), o1.depthwise_conv2d().weights().float_values());
      accumulate(o0.depthwise_conv2d().weights().float_bias(), o1.depthwise_conv2d().weights().float_bias());
    } else if (o0.has_fully_connected()) {
      accumulate(o0.fully_connected().weights().float_values(), o1.fully_connected().weights().float_values());
      accumulate(o0.fully_connected().weights().float_bias(), o1.fully_connected().weights().float_bias());
    }
  }
  accumulate(bundle.head().weights(), moved.head().weights());
  accumulate(bundle.head().bias(), moved.head().bias());
  auto after_net = FloatNetwork::Create(moved);
  const double decrease = before - Loss(*after_net, d);
  EXPECT_NEAR(decrease / eps, norm2, 0.02 * norm2) << name;
}

void CheckGradients(Architecture arch, const Dataset& d) {
  auto bundle = BuildBackbone(arch, d, 7, ArchitectureOptions{{6, 5}, 8, 2});
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  CheckGradients(*bundle, d, ArchitectureName(arch));
}

// Two convolutions of the input, 1x1 to 3 channels and 3x3 to 2, joined by
// a Concat (the input's own channel too), then a global average.
v1::ModelBundle ConcatBundle(const Dataset& d) {
  auto base = BuildBackbone(Architecture::kMlp, d, 7, ArchitectureOptions{{6}, 8, 2});
  EXPECT_TRUE(base.ok()) << base.status();
  v1::ModelBundle b = *base;
  v1::Graph* g = b.mutable_backbone();
  g->Clear();
  std::mt19937 rng(11);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  auto tensor = [&](int h, int w, int c) {
    auto* s = g->add_tensors()->mutable_shape();
    s->set_height(static_cast<uint32_t>(h));
    s->set_width(static_cast<uint32_t>(w));
    s->set_channels(static_cast<uint32_t>(c));
    return static_cast<uint32_t>(g->tensors_size() - 1);
  };
  auto conv = [&](uint32_t in, int out_c, int k) {
    const uint32_t out = tensor(d.height, d.width, out_c);
    auto* op = g->add_ops();
    op->add_inputs(in);
    op->set_output(out);
    op->set_activation(v1::ACTIVATION_RELU);
    auto* c = op->mutable_conv2d();
    c->set_out_channels(static_cast<uint32_t>(out_c));
    c->set_kernel_height(static_cast<uint32_t>(k));
    c->set_kernel_width(static_cast<uint32_t>(k));
    c->set_stride_height(1);
    c->set_stride_width(1);
    c->set_padding(v1::PADDING_SAME);
    for (int v : {out_c, k, k, d.channels}) c->mutable_weights()->add_dims(static_cast<uint32_t>(v));
    for (int i = 0; i < out_c * k * k * d.channels; ++i) c->mutable_weights()->add_float_values(noise(rng));
    for (int i = 0; i < out_c; ++i) c->mutable_weights()->add_float_bias(noise(rng));
    return out;
  };
  const uint32_t input = tensor(d.height, d.width, d.channels);
  g->set_input(input);
  const uint32_t a = conv(input, 3, 1), c = conv(input, 2, 3);
  const uint32_t joined = tensor(d.height, d.width, 3 + 2 + d.channels);
  auto* cat = g->add_ops();
  for (uint32_t t : {a, c, input}) cat->add_inputs(t);
  cat->set_output(joined);
  cat->mutable_concat();
  const uint32_t pooled = tensor(1, 1, 3 + 2 + d.channels);
  auto* pool = g->add_ops();
  pool->add_inputs(joined);
  pool->set_output(pooled);
  pool->mutable_global_average_pool();
  g->set_output(pooled);
  v1::Head* head = b.mutable_head();
  head->set_in_features(static_cast<uint32_t>(3 + 2 + d.channels));
  head->clear_weights();
  for (uint32_t i = 0; i < head->num_classes() * head->in_features(); ++i) head->add_weights(noise(rng));
  return b;
}

TEST(FloatNetwork, ConcatGradientsMatchFiniteDifferences) {
  const Dataset d = RandomImages(4, 6, 5, 1, 3, 4);
  const v1::ModelBundle b = ConcatBundle(d);
  CheckGradients(b, d, "concat");
}

TEST(FloatNetwork, MlpGradientsMatchFiniteDifferences) {
  CheckGradients(Architecture::kMlp, RandomImages(8, 1, 1, 7, 3, 1));
}

TEST(FloatNetwork, CnnGradientsMatchFiniteDifferences) {
  CheckGradients(Architecture::kCnn, RandomImages(4, 17, 16, 2, 3, 2));
}

TEST(FloatNetwork, DsCnnGradientsMatchFiniteDifferences) {
  CheckGradients(Architecture::kDsCnn, RandomImages(4, 9, 6, 1, 3, 3));
}

TEST(Trainer, LearnsASeparableProblem) {
  const Dataset d = RandomImages(300, 16, 16, 1, 3, 4);
  auto bundle = BuildBackbone(Architecture::kCnn, d, 1);
  ASSERT_TRUE(bundle.ok());
  TrainOptions options;
  options.epochs = 8;
  options.batch_size = 32;
  float last_accuracy = 0.0f;
  options.on_epoch = [&](const EpochReport& r) { last_accuracy = r.train_accuracy; };
  ASSERT_TRUE(Train(&*bundle, d, options).ok());
  EXPECT_GT(last_accuracy, 0.95f);
}

TEST(Trainer, RejectsDataOfTheWrongShape) {
  const Dataset d = RandomImages(10, 16, 16, 1, 3, 4);
  auto bundle = BuildBackbone(Architecture::kMlp, RandomImages(10, 1, 1, 5, 3, 1), 1);
  ASSERT_TRUE(bundle.ok());
  const absl::Status s = Train(&*bundle, d, TrainOptions{});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("256 values"), absl::string_view::npos) << s;
}

TEST(Trainer, CnnRefusesTinyImages) {
  auto bundle = BuildBackbone(Architecture::kCnn, RandomImages(10, 1, 1, 5, 3, 1), 1);
  EXPECT_EQ(bundle.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::models::internal
