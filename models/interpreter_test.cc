#include "tinyfed/models/interpreter.h"

#include <random>

#include "gtest/gtest.h"
#include "models/internal/kernels.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::models {
namespace {

// The sets this CPU runs, slowest first.
std::vector<KernelSet> AvailableKernelSets() {
  std::vector<KernelSet> sets = {KernelSet::kReference};
  if (internal::CpuHasAvx2()) sets.push_back(KernelSet::kAvx2);
  if (internal::CpuHasAvx512Vnni()) sets.push_back(KernelSet::kAvx512Vnni);
  if (internal::CpuHasNeon()) sets.push_back(KernelSet::kNeon);
  if (internal::CpuHasNeonDot()) sets.push_back(KernelSet::kNeonDot);
  return sets;
}

// TensorFlow Lite's kernels/conv_test.cc, SimplePerChannelTest: a 2x3x2
// input, two 2x2x2 filters with per-channel scales {1, 2}, VALID padding.
// TFLite's int8 kernels produce the output bytes {61, 127, -115, -93}; the
// quantized input, weights and bias below are the test's float values
// quantized as TFLite quantizes them.
TEST(TfliteGolden, PerChannelConv2D) {
  v1::ModelBundle b;
  b.set_format_version(kBundleFormatVersion);
  b.set_precision(v1::PRECISION_INT8);
  v1::Graph* g = b.mutable_backbone();
  auto tensor = [&](int h, int w, int c) {
    auto* t = g->add_tensors();
    t->mutable_shape()->set_height(static_cast<uint32_t>(h));
    t->mutable_shape()->set_width(static_cast<uint32_t>(w));
    t->mutable_shape()->set_channels(static_cast<uint32_t>(c));
    t->set_scale(0.5f);  // [-63.5, 64]
    t->set_zero_point(-1);
  };
  tensor(2, 3, 2);
  tensor(1, 2, 2);
  g->set_input(0);
  g->set_output(1);
  auto* op = g->add_ops();
  op->add_inputs(0);
  op->set_output(1);
  auto* conv = op->mutable_conv2d();
  conv->set_out_channels(2);
  conv->set_kernel_height(2);
  conv->set_kernel_width(2);
  conv->set_stride_height(1);
  conv->set_stride_width(1);
  conv->set_padding(v1::PADDING_VALID);
  auto* w = conv->mutable_weights();
  for (uint32_t d : {2, 2, 2, 2}) w->add_dims(d);
  const std::vector<int8_t> filter = {1, 2, 3, 4, 3, 4, 5, 6,   // channel 0, scale 1
                                      4, 4, 3, 3, 2, 2, 1, 1};  // channel 1, scale 2
  w->set_int8_values(std::string(filter.begin(), filter.end()));
  w->add_channel_scales(1.0f);
  w->add_channel_scales(2.0f);
  w->add_int32_bias(6);   // 3 / (0.5 * 1)
  w->add_int32_bias(-2);  // -2 / (0.5 * 2)
  std::mt19937 rng(1);
  testing::FinishBundle(&b, 2, rng);
  const std::vector<int8_t> input = {5, 3, 1, -3, -5, -7, 7, 5, 3, -5, -7, -9};
  for (KernelSet kernels : AvailableKernelSets()) {
    auto it = Interpreter::Create(b, kernels);
    ASSERT_TRUE(it.ok()) << it.status();
    std::copy(input.begin(), input.end(), (*it)->quantized_input().begin());
    (*it)->Invoke();
    const auto out = (*it)->embedding();                                 // dequantized: 0.5 * (q + 1)
    const std::vector<float> expected = {31.0f, 64.0f, -57.0f, -46.0f};  // bytes 61, 127, -115, -93
    ASSERT_EQ(out.size(), expected.size());
    for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], expected[i]) << i;
  }
}

TEST(Interpreter, RefusesFloatBundles) {
  std::mt19937 rng(1);
  v1::ModelBundle b = testing::RandomSingleOpBundle(v1::Op::kConv2D, testing::ConvSpec{}, rng);
  b.set_precision(v1::PRECISION_FLOAT32);
  EXPECT_EQ(Interpreter::Create(b).status().code(), absl::StatusCode::kInvalidArgument);
}

// kBest takes the fastest set this CPU runs: VNNI over AVX2, SDOT over NEON.
TEST(Interpreter, BestKernelsAreTheFastestTheCpuRuns) {
  std::mt19937 rng(4);
  const v1::ModelBundle b = testing::RandomSingleOpBundle(v1::Op::kConv2D, testing::ConvSpec{}, rng);
  auto it = Interpreter::Create(b);
  ASSERT_TRUE(it.ok()) << it.status();
  EXPECT_EQ((*it)->kernel_set(), AvailableKernelSets().back()) << (*it)->kernel_set_name();
}

TEST(Interpreter, PredictNormalizesQuantizesAndRunsTheHead) {
  std::mt19937 rng(2);
  testing::ConvSpec spec;
  spec.in_h = spec.in_w = 1;
  spec.in_c = 4;
  spec.out_c = 3;
  v1::ModelBundle b = testing::RandomSingleOpBundle(v1::Op::kFullyConnected, spec, rng);
  auto it = Interpreter::Create(b);
  ASSERT_TRUE(it.ok());
  EXPECT_EQ((*it)->input_size(), 4u);
  EXPECT_EQ((*it)->embedding_size(), 3u);
  const std::vector<float> x = {0.1f, -0.2f, 0.3f, 0.05f};
  const Prediction p = (*it)->Predict(x);
  const auto logits = (*it)->logits();
  EXPECT_EQ(p.label, logits[0] >= logits[1] ? 0 : 1);
  EXPECT_GT(p.confidence, 0.49f);
  EXPECT_LE(p.confidence, 1.0f);
  // Same input, same answer: Invoke is deterministic and keeps no hidden state.
  EXPECT_EQ((*it)->Predict(x).confidence, p.confidence);
  // Short input is padded with the zero point rather than read out of bounds.
  (*it)->Predict(std::span(x).first(2));
}

TEST(Interpreter, ArenaIsSmallerThanTheSumOfTensors) {
  std::mt19937 rng(3);
  v1::ModelBundle b;
  v1::Graph* g = b.mutable_backbone();
  auto* t = g->add_tensors();
  t->mutable_shape()->set_height(16);
  t->mutable_shape()->set_width(16);
  t->mutable_shape()->set_channels(8);
  t->set_scale(0.05f);
  g->set_input(0);
  testing::ConvSpec s;
  s.out_c = 8;
  int x = 0;
  uint64_t sum = 16 * 16 * 8;
  for (int i = 0; i < 4; ++i) {
    x = testing::AppendRandomOp(&b, v1::Op::kConv2D, x, s, rng);
    sum += 16 * 16 * 8;
  }
  testing::FinishBundle(&b, 2, rng);
  auto it = Interpreter::Create(b, KernelSet::kReference);
  ASSERT_TRUE(it.ok()) << it.status();
  // Two live activations of 2 KiB at a time, not five.
  EXPECT_LT((*it)->arena_bytes(), sum / 2);
  EXPECT_EQ((*it)->layers().size(), 4u);
  EXPECT_EQ((*it)->layers()[0].macs, 16u * 16 * 8 * 3 * 3 * 8);
}

}  // namespace
}  // namespace tinyfed::models
