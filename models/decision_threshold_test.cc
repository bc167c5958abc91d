#include "tinyfed/models/decision_threshold.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace tinyfed::models {
namespace {

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<double> Scores(int n, double mean, double stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(mean, stddev);
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(Sigmoid(g(rng)));
  return out;
}

// Many positives: the bound tends to the 5 % quantile of their log-odds.
TEST(DecisionThreshold, LargeSamplesGiveTheQuantile) {
  const double t = ThresholdForSensitivity(Scores(20000, -1.0, 1.0, 1), 0.95);
  EXPECT_NEAR(std::log(t / (1 - t)), -1.0 - 1.645, 0.05);
}

// Few positives: further down, so that the next patients are still caught.
TEST(DecisionThreshold, SmallSamplesAreMoreCautious) {
  int covered = 0, trials = 400;
  for (int trial = 0; trial < trials; ++trial) {
    const double t = ThresholdForSensitivity(Scores(17, -1.0, 1.0, 100 + trial), 0.95);
    // The share of all positives (log-odds N(-1, 1)) above the threshold.
    const double z = (std::log(t / (1 - t)) + 1.0);
    covered += 0.5 * std::erfc(z / M_SQRT2) >= 0.95;
  }
  EXPECT_GE(covered, trials * 0.85);  // 90 % confidence, with room for the approximation
  EXPECT_LE(covered, trials * 0.95);
}

TEST(DecisionThreshold, NeverAboveOneHalfNorFromTooFewCases) {
  EXPECT_EQ(ThresholdForSensitivity(Scores(50, 5.0, 0.1, 2), 0.95), 0.5);
  EXPECT_EQ(ThresholdForSensitivity(std::vector<double>{0.1, 0.2}, 0.95), 0.5);
}

TEST(DecisionThreshold, DecidesThePositiveAtTheThresholdElseTheLikeliestOther) {
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f};  // p = 0.09, 0.67, 0.24
  float p = 0.0f;
  EXPECT_EQ(DecideWithThreshold(logits, 0, 0.05, &p), 0);
  EXPECT_NEAR(p, 0.090, 0.001);
  EXPECT_EQ(DecideWithThreshold(logits, 0, 0.2, &p), 1);
  EXPECT_NEAR(p, 0.665, 0.001);
  EXPECT_EQ(DecideWithThreshold(logits, 1, 0.9, &p), 2);
}

}  // namespace
}  // namespace tinyfed::models
