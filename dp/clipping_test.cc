#include "tinyfed/dp/clipping.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tinyfed::dp {
namespace {

TEST(ClipL2, ScalesOnlyLongUpdates) {
  std::vector<float> v = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(ClipL2(v, 1.0), 5.0);
  EXPECT_NEAR(v[0], 0.6f, 1e-6);
  EXPECT_NEAR(v[1], 0.8f, 1e-6);
  std::vector<float> w = {0.3f, 0.4f};
  EXPECT_NEAR(ClipL2(w, 1.0), 0.5, 1e-7);
  EXPECT_EQ(w[0], 0.3f);
}

TEST(AddGaussianNoise, HasTheRequestedMomentsAndIsSecureSeeded) {
  Seed seed{};
  auto rng = SecureRandom::FromSeed(seed);
  std::vector<float> v(200000, 1.0f);
  AddGaussianNoise(v, 2.0, *rng);
  double mean = 0, sq = 0;
  for (float x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (float x : v) sq += (x - mean) * (x - mean);
  EXPECT_NEAR(mean, 1.0, 0.02);
  EXPECT_NEAR(sq / static_cast<double>(v.size()), 4.0, 0.06);
}

TEST(AdaptiveClipping, NoiseSplitRecombinesToTheTotal) {
  auto zu = AdaptiveClippingUpdateNoise(1.0, 5.0);
  ASSERT_TRUE(zu.ok());
  // z^-2 = zu^-2 + (2 sigma_b)^-2
  EXPECT_NEAR(1.0 / (*zu * *zu) + 1.0 / 100.0, 1.0, 1e-12);
  EXPECT_GT(*zu, 1.0);
  EXPECT_EQ(AdaptiveClippingUpdateNoise(1.0, 0.5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AdaptiveClipping, ConvergesToTheTargetQuantile) {
  auto clip = AdaptiveClip::Create({.initial_clip = 0.01, .target_quantile = 0.8, .learning_rate = 0.2});
  ASSERT_TRUE(clip.ok());
  std::mt19937 rng(1);
  std::lognormal_distribution<double> norms(0.0, 0.5);
  std::normal_distribution<double> count_noise(0.0, 2.0);
  for (int round = 0; round < 400; ++round) {
    int count = 0;
    for (int i = 0; i < 100; ++i) count += clip->Indicator(norms(rng));
    clip->Update(count + count_noise(rng), 100);
  }
  // The 80th percentile of lognormal(0, 0.5) is exp(0.5 * 0.8416) = 1.523.
  EXPECT_NEAR(clip->clip(), 1.523, 0.15);
  EXPECT_FALSE(AdaptiveClip::Create({.initial_clip = 1.0, .target_quantile = 1.0}).ok());
}

}  // namespace
}  // namespace tinyfed::dp
