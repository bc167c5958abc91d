// The vector kernels (AVX2, VNNI, NEON) must give the reference kernels' bytes on random shapes,
// strides, paddings, zero points and activations.
#include "models/internal/kernels.h"

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/quantization.h"

namespace tinyfed::models {
namespace {

using testing::ConvSpec;

ConvSpec RandomSpec(std::mt19937& rng, bool pointwise) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  ConvSpec s;
  s.in_h = pick(1, 14);
  s.in_w = pick(1, 14);
  s.in_c = pick(1, 40);
  s.out_c = pick(1, 40);
  s.kernel_h = pointwise ? 1 : pick(1, std::min(s.in_h, 5));
  s.kernel_w = pointwise ? 1 : pick(1, std::min(s.in_w, 5));
  s.stride_h = pointwise ? 1 : pick(1, 3);
  s.stride_w = pointwise ? 1 : pick(1, 3);
  const int padding = pick(0, 2);
  s.padding = padding == 0 ? v1::PADDING_VALID : padding == 1 ? v1::PADDING_SAME : v1::PADDING_EXPLICIT;
  if (s.padding == v1::PADDING_EXPLICIT) {  // as PyTorch pads: each side below the kernel
    s.pad_top = pick(0, s.kernel_h - 1);
    s.pad_bottom = pick(0, s.kernel_h - 1);
    s.pad_left = pick(0, s.kernel_w - 1);
    s.pad_right = pick(0, s.kernel_w - 1);
  }
  s.activation = static_cast<v1::Activation>(pick(0, 2));
  return s;
}

// The CPU's vector kernels, each tested bit-exact against the reference
// ones: AVX2 on x86-64, and AVX-512 VNNI where the core has it; on 64-bit ARM, NEON and, where the core has them,
// NEON with SDOT (qemu-user's default CPU has them: `make test-arm64`).
bool HasVectorKernels() { return internal::CpuHasAvx2() || internal::CpuHasNeon(); }
std::vector<KernelSet> VectorKernels() {
  if (internal::CpuHasAvx512Vnni()) return {KernelSet::kAvx2, KernelSet::kAvx512Vnni};
  if (internal::CpuHasAvx2()) return {KernelSet::kAvx2};
  if (internal::CpuHasNeonDot()) return {KernelSet::kNeon, KernelSet::kNeonDot};
  return {KernelSet::kNeon};
}

// Outputs seen and outputs strictly inside the activation range, so a test
// that only ever compares saturated values fails instead of passing.
struct Coverage {
  size_t outputs = 0;
  size_t interior = 0;
};

void ExpectSameBytes(const v1::ModelBundle& bundle, std::mt19937& rng, const std::string& label, Coverage* coverage) {
  auto ref = Interpreter::Create(bundle, KernelSet::kReference);
  ASSERT_TRUE(ref.ok()) << ref.status();
  std::vector<std::unique_ptr<Interpreter>> fast;
  for (KernelSet set : VectorKernels()) {
    auto f = Interpreter::Create(bundle, set);
    ASSERT_TRUE(f.ok()) << f.status();
    fast.push_back(std::move(*f));
  }
  for (int trial = 0; trial < 3; ++trial) {
    auto in_ref = (*ref)->quantized_input();
    for (size_t i = 0; i < in_ref.size(); ++i) {
      // Extremes matter most for saturation and rounding; mix them in.
      const int v =
          trial == 0 ? std::uniform_int_distribution<int>(-128, 127)(rng) : (trial == 1 ? (i % 2 ? 127 : -128) : -128);
      in_ref[i] = static_cast<int8_t>(v);
    }
    (*ref)->Invoke();
    const auto a = (*ref)->embedding();
    const auto out = bundle.backbone().tensors(static_cast<int>(bundle.backbone().output()));
    for (size_t i = 0; i < a.size(); ++i) {
      const float lo = out.scale() * static_cast<float>(-128 - out.zero_point());
      const float hi = out.scale() * static_cast<float>(127 - out.zero_point());
      if (trial == 0) {
        ++coverage->outputs;
        if (a[i] > lo && a[i] < hi && a[i] != 0.0f) ++coverage->interior;
      }
    }
    for (auto& f : fast) {
      auto in_fast = f->quantized_input();
      std::copy(in_ref.begin(), in_ref.end(), in_fast.begin());
      f->Invoke();
      const auto b = f->embedding();
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i], b[i]) << label << " (" << f->kernel_set_name() << ") element " << i << " trial " << trial
                              << "\n"
                              << bundle.backbone().DebugString().substr(0, 2000);
      }
    }
  }
}

class KernelParityTest : public ::testing::TestWithParam<v1::Op::KindCase> {
 protected:
  void SetUp() override {
    if (!HasVectorKernels()) GTEST_SKIP() << "this CPU has neither AVX2 nor NEON";
  }
};

TEST_P(KernelParityTest, VectorKernelsMatchReferenceOnRandomShapes) {
  std::mt19937 rng(1234 + static_cast<int>(GetParam()));
  Coverage coverage;
  for (int i = 0; i < 150; ++i) {
    const ConvSpec spec = RandomSpec(rng, /*pointwise=*/i % 4 == 0);
    const auto bundle = testing::RandomSingleOpBundle(GetParam(), spec, rng);
    ExpectSameBytes(bundle, rng, internal::OpKindName(GetParam()) + " case " + std::to_string(i), &coverage);
    if (HasFatalFailure()) return;
  }
  // Counted on the uniformly random trial. Fused ReLUs zero some outputs and
  // random output zero points put the range off-centre, so about half clamp.
  EXPECT_GT(coverage.interior, coverage.outputs / 4)
      << coverage.interior << " of " << coverage.outputs << " outputs were unsaturated";
}

INSTANTIATE_TEST_SUITE_P(AllOps, KernelParityTest,
                         ::testing::Values(v1::Op::kConv2D, v1::Op::kDepthwiseConv2D, v1::Op::kFullyConnected,
                                           v1::Op::kMaxPool, v1::Op::kAveragePool, v1::Op::kGlobalAveragePool,
                                           v1::Op::kAdd, v1::Op::kReshape, v1::Op::kConcat),
                         [](const auto& param_info) { return internal::OpKindName(param_info.param); });

TEST(KernelParity, WideChannelsHitEveryVectorPath) {
  if (!HasVectorKernels()) GTEST_SKIP() << "this CPU has neither AVX2 nor NEON";
  std::mt19937 rng(99);
  for (auto kind : {v1::Op::kConv2D, v1::Op::kDepthwiseConv2D, v1::Op::kMaxPool, v1::Op::kAveragePool, v1::Op::kAdd,
                    v1::Op::kConcat}) {
    for (int c : {16, 32, 48, 64, 65}) {
      ConvSpec s;
      s.in_h = 9;
      s.in_w = 7;
      s.in_c = c;
      s.out_c = c;
      s.padding = v1::PADDING_SAME;
      s.activation = v1::ACTIVATION_RELU6;
      Coverage coverage;
      ExpectSameBytes(testing::RandomSingleOpBundle(kind, s, rng), rng,
                      internal::OpKindName(kind) + " c=" + std::to_string(c), &coverage);
      if (HasFatalFailure()) return;
    }
  }
}

// A Conv2D of one input channel with stride 1 across runs with pixels in the
// SIMD lanes (single_channel_conv.cc): widths that leave a partial block of 8,
// odd and even kernel widths, every padding, tall strides, 1 to 16 channels,
// and multipliers above one.
TEST(KernelParity, SingleChannelConvolutions) {
  if (!HasVectorKernels()) GTEST_SKIP() << "this CPU has neither AVX2 nor NEON";
  std::mt19937 rng(2024);
  Coverage coverage;
  for (int i = 0; i < 120; ++i) {
    ConvSpec s = RandomSpec(rng, false);
    s.in_w = std::uniform_int_distribution<int>(1, 30)(rng);
    s.kernel_w = std::uniform_int_distribution<int>(1, std::min(s.in_w, 6))(rng);
    if (s.padding == v1::PADDING_EXPLICIT) {
      s.pad_left = std::uniform_int_distribution<int>(0, s.kernel_w - 1)(rng);
      s.pad_right = std::uniform_int_distribution<int>(0, s.kernel_w - 1)(rng);
    }
    s.in_c = 1;
    s.out_c = 1 + i % 16;
    s.stride_w = 1;
    auto bundle = testing::RandomSingleOpBundle(v1::Op::kConv2D, s, rng);
    if (i % 5 == 0) {  // every channel multiplier at least 4: the left-shift path
      v1::Graph* g = bundle.mutable_backbone();
      const v1::Op& last = g->ops(g->ops_size() - 1);
      const auto& scales = last.conv2d().weights().channel_scales();
      const float in_scale = g->tensors(static_cast<int>(last.inputs(0))).scale();
      g->mutable_tensors(static_cast<int>(last.output()))
          ->set_scale(in_scale * *std::min_element(scales.begin(), scales.end()) / 4.0f);
    }
    ExpectSameBytes(bundle, rng, "single-channel conv case " + std::to_string(i), &coverage);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(coverage.interior, coverage.outputs / 4)
      << coverage.interior << " of " << coverage.outputs << " outputs were unsaturated";
}

// Multipliers of one or more take the left-shift path of the requantization.
TEST(KernelParity, MultipliersAboveOne) {
  if (!HasVectorKernels()) GTEST_SKIP() << "this CPU has neither AVX2 nor NEON";
  std::mt19937 rng(7);
  for (auto kind : {v1::Op::kConv2D, v1::Op::kDepthwiseConv2D, v1::Op::kFullyConnected, v1::Op::kAdd}) {
    for (int i = 0; i < 20; ++i) {
      ConvSpec s = RandomSpec(rng, false);
      auto bundle = testing::RandomSingleOpBundle(kind, s, rng);
      v1::Graph* g = bundle.mutable_backbone();
      const v1::Op& last = g->ops(g->ops_size() - 1);
      const float in_scale = g->tensors(static_cast<int>(last.inputs(0))).scale();
      float out_scale = 0.0f;
      if (kind == v1::Op::kAdd) {  // output multiplier 2 max(s1, s2) / (2^20 s_out) = 8
        const float other = g->tensors(static_cast<int>(last.inputs(1))).scale();
        out_scale = 2.0f * std::max(in_scale, other) / static_cast<float>(1 << 23);
      } else {  // every channel multiplier in_scale * w_scale / s_out >= 4
        const v1::Weights& w = last.has_conv2d()            ? last.conv2d().weights()
                               : last.has_fully_connected() ? last.fully_connected().weights()
                                                            : last.depthwise_conv2d().weights();
        out_scale = in_scale * *std::min_element(w.channel_scales().begin(), w.channel_scales().end()) / 4.0f;
      }
      g->mutable_tensors(static_cast<int>(last.output()))->set_scale(out_scale);
      auto analysis = internal::AnalyzeBundle(bundle);
      ASSERT_TRUE(analysis.ok()) << analysis.status();
      const auto& op = analysis->ops.back();
      const bool left =
          op.output_multiplier.shift > 0 || std::any_of(op.channel_multipliers.begin(), op.channel_multipliers.end(),
                                                        [](const QuantizedMultiplier& m) { return m.shift > 0; });
      EXPECT_TRUE(left) << internal::OpKindName(kind);
      Coverage coverage;
      ExpectSameBytes(bundle, rng, internal::OpKindName(kind) + " x300", &coverage);
      if (HasFatalFailure()) return;
    }
  }
}

#if defined(__x86_64__)
// The AVX2 requantization of 8 lanes of one multiplier and shift, as Concat
// and the single-channel convolution run it.
TINYFED_AVX2 void Avx2Multiply(const int32_t* x, int32_t multiplier, int32_t shift, int32_t* out) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i m = _mm256_set1_epi32(multiplier), s = _mm256_set1_epi32(shift);
  const __m256i r = shift <= 0 ? internal::kernels::MultiplyByQuantizedMultiplierBelowOne(v, m, s)
                               : internal::kernels::MultiplyByQuantizedMultiplier(v, m, s);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), r);
}

// The same 8 sums in each lane group of a 16-channel block, requantized with
// the block's table (PrepareRequantization), as the convolutions run it.
TINYFED_AVX2 void Avx2RequantizeGroups(const int32_t* x, const internal::PreparedOp& op, int32_t* out) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const internal::kernels::Requantizer r = internal::kernels::RequantizerOf(op);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), internal::kernels::RequantizeGroup(v, r, r.table));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8),
                      internal::kernels::RequantizeGroup(v, r, r.table + internal::kernels::kRequantizationRows * 8));
}

// Sums at the int32 extremes, at and next to each power of two and one and
// a half of it, and random ones.
std::vector<int32_t> EdgeSums() {
  std::vector<int32_t> xs = {0, 1, -1, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1};
  for (int k = 0; k < 31; ++k) {
    for (int64_t d : {-1, 0, 1}) {
      xs.push_back(static_cast<int32_t>((int64_t{1} << k) + d));
      xs.push_back(static_cast<int32_t>(-(int64_t{1} << k) + d));
      xs.push_back(static_cast<int32_t>(3 * (int64_t{1} << k) / 2 + d));
      xs.push_back(static_cast<int32_t>(-3 * (int64_t{1} << k) / 2 + d));
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) xs.push_back(static_cast<int32_t>(rng()));
  xs.resize(xs.size() / 8 * 8);
  return xs;
}

// Every multiplier range QuantizeMultiplier produces.
std::vector<int32_t> EdgeMultipliers() {
  std::vector<int32_t> ms = {0, 1 << 30, INT32_MAX, (1 << 30) + 1, 1518500250};
  std::mt19937 rng(8);
  for (int i = 0; i < 20; ++i) ms.push_back(std::uniform_int_distribution<int32_t>(1 << 30, INT32_MAX)(rng));
  return ms;
}

// Every rounding case the kernels' tests might miss, against the scalar
// definition.
TEST(Requantization, Avx2MatchesTheScalarDefinitionAtTheEdges) {
  if (!internal::CpuHasAvx2()) GTEST_SKIP() << "no AVX2";
  const std::vector<int32_t> xs = EdgeSums();
  size_t checked = 0;
  for (int32_t m : EdgeMultipliers()) {
    for (int shift = -31; shift <= 30; ++shift) {
      for (size_t i = 0; i < xs.size(); i += 8) {
        int32_t out[8];
        Avx2Multiply(&xs[i], m, shift, out);
        for (size_t j = 0; j < 8; ++j, ++checked) {
          ASSERT_EQ(out[j], MultiplyByQuantizedMultiplier(xs[i + j], QuantizedMultiplier{m, shift}))
              << "x " << xs[i + j] << " multiplier " << m << " shift " << shift;
        }
      }
    }
  }
  EXPECT_GT(checked, 100000u);
}

// The convolutions' table: each lane its own channel's bias, multiplier and
// shift, in kLaneChannel order, with and without left shifts.
TEST(Requantization, TheConvolutionsTableMatchesTheScalarDefinition) {
  if (!internal::CpuHasAvx2()) GTEST_SKIP() << "no AVX2";
  const std::vector<int32_t> xs = EdgeSums(), ms = EdgeMultipliers();
  std::mt19937 rng(9);
  size_t checked = 0;
  for (int base = -31; base <= 30; ++base) {
    internal::PreparedOp op;
    op.g.out_c = internal::kernels::kChannelBlock;
    op.output_zero_point = base;
    std::vector<int32_t> bias;
    for (int c = 0; c < op.g.out_c; ++c) {
      op.multiplier.push_back(ms[rng() % ms.size()]);
      op.shift.push_back(std::clamp(base + c % 3 - 1, -31, 30));
      bias.push_back(static_cast<int32_t>(rng()) >> (c % 20));
    }
    op.any_left_shift = std::any_of(op.shift.begin(), op.shift.end(), [](int32_t s) { return s > 0; });
    internal::kernels::PrepareRequantization(&op, bias);
    for (size_t i = 0; i < xs.size(); i += 8) {
      int32_t out[16];
      Avx2RequantizeGroups(&xs[i], op, out);
      for (int lane = 0; lane < 16; ++lane, ++checked) {
        const int c = internal::kernels::kLaneChannel[lane];
        const int32_t sum = internal::kernels::WrapAdd(xs[i + lane % 8], bias[c]);
        const int32_t want = internal::kernels::WrapAdd(
            MultiplyByQuantizedMultiplier(sum, QuantizedMultiplier{op.multiplier[c], op.shift[c]}), base);
        ASSERT_EQ(out[lane], want) << "lane " << lane << " sum " << sum << " multiplier " << op.multiplier[c]
                                   << " shift " << op.shift[c];
      }
    }
  }
  EXPECT_GT(checked, 100000u);
}
#endif

}  // namespace
}  // namespace tinyfed::models
