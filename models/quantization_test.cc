#include "tinyfed/models/quantization.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace tinyfed::models {
namespace {

// Golden values computed by hand from TFLite's definitions
// (quantization_util.cc QuantizeMultiplier, common.h MultiplyByQuantizedMultiplier).
TEST(QuantizeMultiplier, GoldenValues) {
  struct Case {
    double m;
    int32_t multiplier;
    int32_t shift;
  };
  for (const Case& c : {Case{0.5, 1 << 30, 0}, Case{0.25, 1 << 30, -1}, Case{1.0, 1 << 30, 1},
                        Case{0.75, 1610612736, 0}, Case{2.0, 1 << 30, 2}, Case{0.0, 0, 0}, Case{1e-12, 0, 0},
                        // frexp(0.999999999) rounds up to 2^31 and renormalizes.
                        Case{0.9999999999, 1 << 30, 1}}) {
    auto q = QuantizeMultiplier(c.m);
    ASSERT_TRUE(q.ok()) << c.m;
    EXPECT_EQ(q->multiplier, c.multiplier) << c.m;
    EXPECT_EQ(q->shift, c.shift) << c.m;
  }
}

TEST(QuantizeMultiplier, RejectsNegativeNaNAndHuge) {
  EXPECT_FALSE(QuantizeMultiplier(-0.1).ok());
  EXPECT_FALSE(QuantizeMultiplier(std::nan("")).ok());
  EXPECT_FALSE(QuantizeMultiplier(std::numeric_limits<double>::infinity()).ok());
  EXPECT_FALSE(QuantizeMultiplier(4e9).ok());
}

TEST(FixedPoint, RoundingDoublingHighMul) {
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(INT32_MIN, INT32_MIN), INT32_MAX);
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(1 << 30, 1 << 30), 1 << 29);
  // gemmlowp's nudge rounds ties upward: 1.5 -> 2 but -1.5 -> -1.
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(3, 1 << 30), 2);
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(-3, 1 << 30), -1);
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(1, 1 << 30), 1);    // 0.5 -> 1
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(-1, 1 << 30), 0);   // -0.5 -> 0
  EXPECT_EQ(SaturatingRoundingDoublingHighMul(-5, 1 << 30), -2);  // -2.5 -> -2
}

TEST(FixedPoint, RoundingDivideByPOT) {
  EXPECT_EQ(RoundingDivideByPOT(5, 1), 3);    // 2.5 -> 3
  EXPECT_EQ(RoundingDivideByPOT(-5, 1), -3);  // -2.5 -> -3
  EXPECT_EQ(RoundingDivideByPOT(7, 2), 2);    // 1.75 -> 2
  EXPECT_EQ(RoundingDivideByPOT(-6, 2), -2);  // -1.5 -> -2
  EXPECT_EQ(RoundingDivideByPOT(-5, 2), -1);  // -1.25 -> -1
  EXPECT_EQ(RoundingDivideByPOT(INT32_MAX, 31), 1);
  EXPECT_EQ(RoundingDivideByPOT(INT32_MIN, 31), -1);
  EXPECT_EQ(RoundingDivideByPOT(123, 0), 123);
}

TEST(FixedPoint, MultiplyMatchesRealArithmeticWithinOne) {
  for (double m : {0.0001, 0.0123, 0.3, 0.5, 0.999, 1.7, 25.0}) {
    auto q = QuantizeMultiplier(m);
    ASSERT_TRUE(q.ok());
    for (int32_t x : {-100000, -777, -1, 0, 1, 3, 999, 65535}) {
      EXPECT_NEAR(MultiplyByQuantizedMultiplier(x, *q), x * m, 1.0) << x << " * " << m;
    }
  }
}

TEST(AffineQuantization, RangeContainsZeroExactly) {
  const auto q = ChooseAffineQuantization(0.5f, 6.0f);  // widened to [0, 6]
  EXPECT_EQ(q.zero_point, -128);
  EXPECT_FLOAT_EQ(q.scale, 6.0f / 255.0f);
  EXPECT_EQ(DequantizeValue(QuantizeValue(0.0f, q), q), 0.0f);
  const auto sym = ChooseAffineQuantization(-1.0f, 1.0f);
  EXPECT_EQ(DequantizeValue(QuantizeValue(0.0f, sym), sym), 0.0f);
  EXPECT_EQ(QuantizeValue(1e30f, sym), 127);
  EXPECT_EQ(QuantizeValue(-1e30f, sym), -128);
  EXPECT_EQ(QuantizeValue(std::nanf(""), sym), -128);
}

TEST(RoundHalfAwayFromZero, SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(RoundHalfAwayFromZero(2.5f), 3);
  EXPECT_EQ(RoundHalfAwayFromZero(-2.5f), -3);
  EXPECT_EQ(RoundHalfAwayFromZero(1e20f), INT32_MAX);
  EXPECT_EQ(RoundHalfAwayFromZero(-1e20f), INT32_MIN);
  EXPECT_EQ(RoundHalfAwayFromZero(std::numeric_limits<float>::infinity()), INT32_MAX);
  EXPECT_EQ(RoundHalfAwayFromZero(std::nanf("")), 0);
}

TEST(QuantizeSymmetricPerChannel, ScalesPerRow) {
  const std::vector<float> w = {1.0f, -2.0f, 0.5f, 0.0f, 0.0f, 0.0f};
  std::vector<int8_t> q(6);
  std::vector<float> scales(2);
  QuantizeSymmetricPerChannel(w, 2, q, scales);
  EXPECT_FLOAT_EQ(scales[0], 2.0f / 127.0f);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[0], 64);         // 63.5 rounds away from zero
  EXPECT_GT(scales[1], 0.0f);  // a dead channel keeps a usable scale
  EXPECT_EQ(q[3], 0);
}

}  // namespace
}  // namespace tinyfed::models
