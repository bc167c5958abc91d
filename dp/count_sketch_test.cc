#include "tinyfed/dp/count_sketch.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace tinyfed::dp {
namespace {

Seed SeedOf(uint8_t tag) {
  Seed s{};
  s[0] = tag;
  return s;
}

std::vector<double> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = g(rng);
  return v;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(CountSketch, IsLinearAndUnsketchIsItsTranspose) {
  auto s = CountSketch::Create(850, 170, SeedOf(1));
  ASSERT_TRUE(s.ok()) << s.status();
  const auto a = Random(850, 1), b = Random(850, 2);
  std::vector<double> sum(850);
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = a[i] + b[i];
  const auto sa = s->Sketch(a), sb = s->Sketch(b), ssum = s->Sketch(sum);
  ASSERT_EQ(ssum.size(), 170u);
  for (size_t j = 0; j < ssum.size(); ++j) EXPECT_NEAR(ssum[j], sa[j] + sb[j], 1e-12);
  const auto y = Random(170, 3);
  EXPECT_NEAR(Dot(s->Sketch(a), y), Dot(a, s->Unsketch(y)), 1e-9);
}

TEST(CountSketch, BucketsAreBalancedAndBoundTheNorms) {
  for (size_t m : {1, 7, 170, 849, 850}) {
    auto s = CountSketch::Create(850, m, SeedOf(2));
    ASSERT_TRUE(s.ok()) << s.status();
    // A unit vector lands in one bucket: count each bucket's values.
    std::vector<int> load(m, 0);
    for (size_t i = 0; i < 850; ++i) {
      std::vector<double> e(850, 0.0);
      e[i] = 1.0;
      const auto y = s->Sketch(e);
      for (size_t j = 0; j < m; ++j) load[j] += y[j] != 0.0;
    }
    for (int l : load) {
      EXPECT_GE(l, static_cast<int>(850 / m));
      EXPECT_LE(l, static_cast<int>(s->max_load()));
    }
    for (uint32_t trial = 0; trial < 20; ++trial) {
      const auto x = Random(850, 10 + trial);
      const auto y = s->Sketch(x);
      EXPECT_LE(std::sqrt(Dot(y, y)), std::sqrt(static_cast<double>(s->max_load()) * Dot(x, x)) + 1e-9);
    }
  }
}

// With as many buckets as values the sketch is a signed permutation:
// Unsketch undoes it exactly.
TEST(CountSketch, FullWidthIsExactlyInvertible) {
  auto s = CountSketch::Create(100, 100, SeedOf(3));
  ASSERT_TRUE(s.ok());
  const auto x = Random(100, 4);
  EXPECT_EQ(s->Unsketch(s->Sketch(x)), x);
}

// Over seeds, Unsketch(Sketch(x)) is x on average, and each value's cross-talk
// has the variance of the other values sharing its bucket: about
// (|x|^2 - x_i^2) / m.
TEST(CountSketch, DecodingIsUnbiasedWithTheExpectedCrossTalk) {
  const size_t d = 200, m = 40;
  const auto x = Random(d, 5);
  std::vector<double> mean(d, 0.0), second(d, 0.0);
  const int seeds = 2000;
  for (int k = 0; k < seeds; ++k) {
    Seed seed{};
    seed[0] = static_cast<uint8_t>(k);
    seed[1] = static_cast<uint8_t>(k >> 8);
    auto s = CountSketch::Create(d, m, seed);
    ASSERT_TRUE(s.ok());
    const auto back = s->Unsketch(s->Sketch(x));
    for (size_t i = 0; i < d; ++i) {
      mean[i] += back[i] / seeds;
      second[i] += (back[i] - x[i]) * (back[i] - x[i]) / seeds;
    }
  }
  const double norm2 = Dot(x, x);
  double worst_bias = 0, variance = 0;
  for (size_t i = 0; i < d; ++i) {
    worst_bias = std::max(worst_bias, std::abs(mean[i] - x[i]));
    variance +=
        second[i] / ((norm2 - x[i] * x[i]) * (static_cast<double>(d / m) - 1.0) / (static_cast<double>(d) - 1.0));
  }
  // Each estimate is a mean of 2000 draws of standard deviation about 2.2.
  EXPECT_LT(worst_bias, 0.25);
  EXPECT_NEAR(variance / static_cast<double>(d), 1.0, 0.05);
}

TEST(CountSketch, FollowsItsSeedAndRefusesBadSizes) {
  auto a = CountSketch::Create(50, 10, SeedOf(6));
  auto b = CountSketch::Create(50, 10, SeedOf(6));
  auto c = CountSketch::Create(50, 10, SeedOf(7));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const auto x = Random(50, 8);
  EXPECT_EQ(a->Sketch(x), b->Sketch(x));
  EXPECT_NE(a->Sketch(x), c->Sketch(x));
  EXPECT_EQ(CountSketch::Create(50, 0, SeedOf(6)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountSketch::Create(50, 51, SeedOf(6)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::dp
