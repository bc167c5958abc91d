#include "tinyfed/client/private_head_trainer.h"

#include <cmath>
#include <random>

#include "client/testing/heads.h"
#include "gtest/gtest.h"

namespace tinyfed::client {
namespace {

using testing::Accuracy;
using testing::Separable;
using testing::ZeroHead;

std::vector<double> Flat(const v1::Head& h) {
  std::vector<double> v(h.weights().begin(), h.weights().end());
  v.insert(v.end(), h.bias().begin(), h.bias().end());
  return v;
}

dp::Seed SeedOf(uint8_t b) {
  dp::Seed s{};
  s[0] = b;
  return s;
}

TEST(PrivateHeadTrainer, LearnsDespiteTheNoise) {
  std::vector<float> x, tx;
  std::vector<int> y, ty;
  Separable(600, 8, 4, &x, &y, 1);
  Separable(400, 8, 4, &tx, &ty, 2);
  v1::Head head = ZeroHead(8, 4);
  auto rng = dp::SecureRandom::FromSeed(SeedOf(1));
  PrivateTrainingTask task{.sampling_rate = 0.1,
                           .noise_multiplier = 1.0,
                           .clip = 1.0,
                           .steps = 60,
                           .learning_rate = 0.5f,
                           .momentum = 0.9f,
                           .weight_decay = 0.0f,
                           .class_weights = {}};
  ASSERT_TRUE(TrainHeadPrivately(&head, x, y, task, *rng).ok());
  EXPECT_GT(Accuracy(head, tx, ty), 0.9);
}

// Replacing one patient by an extreme one moves the noiseless part of a step
// (q = 1, lr = 1, no momentum) by at most 2 C / (q n): the clip holds.
TEST(PrivateHeadTrainer, OnePatientMovesAStepByAtMostTwoClipsOverTheBatch) {
  std::vector<float> x;
  std::vector<int> y;
  Separable(50, 6, 3, &x, &y, 3);
  std::vector<float> outlier = x;
  for (int d = 0; d < 6; ++d) outlier[static_cast<size_t>(d)] = 1e4f * static_cast<float>(d + 1);
  PrivateTrainingTask task{.sampling_rate = 1.0,
                           .noise_multiplier = 1.0,
                           .clip = 0.5,
                           .steps = 1,
                           .learning_rate = 1.0f,
                           .momentum = 0.0f,
                           .weight_decay = 0.0f,
                           .class_weights = {}};
  v1::Head a = ZeroHead(6, 3), b = ZeroHead(6, 3);
  // The same seed: the same noise, which cancels in the difference.
  ASSERT_TRUE(TrainHeadPrivately(&a, x, y, task, *dp::SecureRandom::FromSeed(SeedOf(4))).ok());
  ASSERT_TRUE(TrainHeadPrivately(&b, outlier, y, task, *dp::SecureRandom::FromSeed(SeedOf(4))).ok());
  const auto fa = Flat(a), fb = Flat(b);
  double diff2 = 0.0;
  for (size_t i = 0; i < fa.size(); ++i) diff2 += (fa[i] - fb[i]) * (fa[i] - fb[i]);
  EXPECT_LE(std::sqrt(diff2), 2 * 0.5 / 50 * (1 + 1e-5));
  EXPECT_GT(std::sqrt(diff2), 0.2 * 0.5 / 50);  // the outlier did move it
}

// With no signal (all-zero embeddings and a head at the optimum for equal
// classes) a step is pure noise: stddev z C / (q n) per coordinate.
TEST(PrivateHeadTrainer, AddsTheCalibratedNoise) {
  const int n = 200;
  std::vector<float> x(static_cast<size_t>(n) * 4, 0.0f);
  std::vector<int> y(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % 2;
  PrivateTrainingTask task{.sampling_rate = 0.25,
                           .noise_multiplier = 2.0,
                           .clip = 1.0,
                           .steps = 1,
                           .learning_rate = 1.0f,
                           .momentum = 0.0f,
                           .weight_decay = 0.0f,
                           .class_weights = {}};
  double sum2 = 0.0;
  int count = 0;
  auto rng = dp::SecureRandom::FromSeed(SeedOf(5));
  for (int trial = 0; trial < 400; ++trial) {
    v1::Head head = ZeroHead(4, 2);
    ASSERT_TRUE(TrainHeadPrivately(&head, x, y, task, *rng).ok());
    for (float w : head.weights()) sum2 += static_cast<double>(w) * w, ++count;  // x = 0: no signal
  }
  const double expected = 2.0 * 1.0 / (0.25 * n);
  EXPECT_NEAR(std::sqrt(sum2 / count) / expected, 1.0, 0.05);
}

TEST(PrivateHeadTrainer, ClassWeightsLiftTheMinority) {
  // 9 to 1: unweighted, the head leans to the majority.
  std::vector<float> x;
  std::vector<int> y;
  std::mt19937 gen(6);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (int i = 0; i < 1000; ++i) {
    const int label = i % 10 == 0 ? 1 : 0;
    y.push_back(label);
    x.push_back(noise(gen) + (label ? 1.0f : -0.5f));
    x.push_back(noise(gen));
  }
  auto minority_recall = [&](const v1::Head& h) {
    int hit = 0, total = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      if (y[i] != 1) continue;
      ++total;
      const float l0 = h.bias(0) + h.weights(0) * x[2 * i] + h.weights(1) * x[2 * i + 1];
      const float l1 = h.bias(1) + h.weights(2) * x[2 * i] + h.weights(3) * x[2 * i + 1];
      hit += l1 > l0;
    }
    return static_cast<double>(hit) / total;
  };
  PrivateTrainingTask task{.sampling_rate = 0.2,
                           .noise_multiplier = 0.8,
                           .clip = 1.0,
                           .steps = 100,
                           .learning_rate = 0.5f,
                           .momentum = 0.9f,
                           .weight_decay = 0.0f,
                           .class_weights = {}};
  v1::Head plain = ZeroHead(2, 2), weighted = ZeroHead(2, 2);
  ASSERT_TRUE(TrainHeadPrivately(&plain, x, y, task, *dp::SecureRandom::FromSeed(SeedOf(7))).ok());
  task.class_weights = {1.0f / 1.8f, 1.0f / 0.2f};
  ASSERT_TRUE(TrainHeadPrivately(&weighted, x, y, task, *dp::SecureRandom::FromSeed(SeedOf(7))).ok());
  EXPECT_GT(minority_recall(weighted), minority_recall(plain) + 0.2);
}

TEST(PrivateHeadTrainer, RejectsBadInputAndLeavesTheHead) {
  std::vector<float> x;
  std::vector<int> y;
  Separable(20, 3, 2, &x, &y, 8);
  const v1::Head original = ZeroHead(3, 2);
  auto rng = dp::SecureRandom::FromSeed(SeedOf(9));
  auto fails = [&](PrivateTrainingTask task, std::vector<int> labels, const std::string& needle) {
    v1::Head head = original;
    auto s = TrainHeadPrivately(&head, x, labels, task, *rng);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    EXPECT_EQ(head.SerializeAsString(), original.SerializeAsString());
  };
  PrivateTrainingTask ok;
  std::vector<int> bad = y;
  bad[3] = 2;
  fails(ok, bad, "label 2 outside [0, 2)");
  fails(ok, {0, 1}, "embedding values for 2 labels");
  PrivateTrainingTask t = ok;
  t.sampling_rate = 0.0;
  fails(t, y, "sampling rate");
  t = ok;
  t.noise_multiplier = 0.0;
  fails(t, y, "noise multiplier");
  t = ok;
  t.class_weights = {1.0f};
  fails(t, y, "1 class weights for 2 classes");
}

}  // namespace
}  // namespace tinyfed::client
