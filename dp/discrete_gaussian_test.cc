#include "tinyfed/dp/discrete_gaussian.h"

#include <cmath>
#include <map>

#include "gtest/gtest.h"

namespace tinyfed::dp {
namespace {

std::unique_ptr<SecureRandom> Rng(uint8_t tag) {
  Seed seed{};
  seed[0] = tag;
  return SecureRandom::FromSeed(seed);
}

TEST(SecureRandom, SeededStreamsAreReproducibleAndDistinct) {
  auto a = Rng(1), b = Rng(1), c = Rng(2);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a->Next64();
    EXPECT_EQ(x, b->Next64());
    EXPECT_NE(x, c->Next64());
  }
}

TEST(SecureRandom, UniformIsUniform) {
  auto rng = Rng(3);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[rng->Uniform(7)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(rng->Uniform128((uint128(1) << 100) + 3), (uint128(1) << 100) + 3);
}

TEST(BernoulliExp, MatchesExpMinusGamma) {
  auto rng = Rng(4);
  for (auto [num, den] : std::vector<std::pair<int, int>>{{0, 1}, {1, 3}, {1, 1}, {5, 2}, {7, 3}}) {
    int hits = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) hits += BernoulliExp(*rng, num, den);
    const double p = std::exp(-static_cast<double>(num) / den);
    EXPECT_NEAR(hits / static_cast<double>(n), p, 4 * std::sqrt(p * (1 - p) / n) + 1e-9) << num << "/" << den;
  }
}

// Sample mean and variance, and a chi-square test of the pmf, at several sigmas.
class DiscreteGaussianTest : public ::testing::TestWithParam<double> {};

TEST_P(DiscreteGaussianTest, MomentsAndPmf) {
  const double sigma = GetParam();
  auto s2 = SigmaSquaredAsRational(sigma * sigma);
  ASSERT_TRUE(s2.ok());
  auto sampler = DiscreteGaussianSampler::Create(*s2);
  ASSERT_TRUE(sampler.ok());
  auto rng = Rng(static_cast<uint8_t>(10 + sigma));
  const int n = 100000;
  std::map<int64_t, int> counts;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t x = sampler->Sample(*rng);
    ++counts[x];
    sum += static_cast<double>(x);
    sq += static_cast<double>(x) * static_cast<double>(x);
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  // Var of N_Z(0, s^2) is within e^{-2 pi^2 s^2}-ish of s^2 for s >= 1.
  const double s2v = s2->value();
  EXPECT_NEAR(mean, 0.0, 5 * std::sqrt(s2v / n));
  EXPECT_NEAR(var / s2v, 1.0, 5 * std::sqrt(2.0 / n));
  // Chi-square over bins |x| <= 3 sigma (plus two tail bins), exact pmf.
  const auto limit = static_cast<int64_t>(std::ceil(3 * sigma));
  double norm = 0;
  for (int64_t x = -50 * limit; x <= 50 * limit; ++x) norm += std::exp(-(double)(x * x) / (2 * s2v));
  double chi2 = 0, tail_expected = 0;
  int tail_observed = 0, bins = 0;
  for (int64_t x = -50 * limit; x <= 50 * limit; ++x) {
    const double expected = n * std::exp(-(double)(x * x) / (2 * s2v)) / norm;
    const int observed = counts.count(x) ? counts[x] : 0;
    if (std::llabs(x) <= limit) {
      chi2 += (observed - expected) * (observed - expected) / expected;
      ++bins;
    } else {
      tail_expected += expected;
      tail_observed += observed;
    }
  }
  chi2 += (tail_observed - tail_expected) * (tail_observed - tail_expected) / tail_expected;
  ++bins;
  // 99.9th percentile of chi-square with k - 1 degrees of freedom (Wilson-Hilferty).
  const double k = bins - 1;
  const double z = 3.09;
  const double critical = k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
  EXPECT_LT(chi2, critical) << "sigma " << sigma << ", " << bins << " bins";
}

INSTANTIATE_TEST_SUITE_P(Sigmas, DiscreteGaussianTest, ::testing::Values(0.8, 1.0, 3.0, 10.0, 55.5));

TEST(DiscreteGaussian, RejectsBadSigma) {
  EXPECT_FALSE(SigmaSquaredAsRational(0.0).ok());
  EXPECT_FALSE(SigmaSquaredAsRational(-1.0).ok());
  EXPECT_FALSE(SigmaSquaredAsRational(1e12).ok());
  EXPECT_FALSE(DiscreteGaussianSampler::Create(Rational{0, 1}).ok());
}

}  // namespace
}  // namespace tinyfed::dp
