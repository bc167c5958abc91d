#include "tinyfed/client/head_trainer.h"

#include <random>

#include "gtest/gtest.h"

namespace tinyfed::client {
namespace {

v1::Head ZeroHead(uint32_t dim, uint32_t classes) {
  v1::Head h;
  h.set_in_features(dim);
  h.set_num_classes(classes);
  for (uint32_t i = 0; i < dim * classes; ++i) h.add_weights(0.0f);
  for (uint32_t c = 0; c < classes; ++c) h.add_bias(0.0f);
  return h;
}

// Embeddings whose class shows in one coordinate, like a trained backbone's.
void Separable(int n, uint32_t dim, uint32_t classes, std::vector<float>* x, std::vector<int>* y, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  for (int i = 0; i < n; ++i) {
    const int label = i % static_cast<int>(classes);
    y->push_back(label);
    for (uint32_t d = 0; d < dim; ++d) x->push_back(noise(rng) + (d == static_cast<uint32_t>(label) ? 2.0f : 0.0f));
  }
}

double Accuracy(const v1::Head& h, const std::vector<float>& x, const std::vector<int>& y) {
  const uint32_t dim = h.in_features(), classes = h.num_classes();
  int correct = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    int best = 0;
    float best_logit = -1e30f;
    for (uint32_t c = 0; c < classes; ++c) {
      float l = h.bias(static_cast<int>(c));
      for (uint32_t d = 0; d < dim; ++d) l += h.weights(static_cast<int>(c * dim + d)) * x[i * dim + d];
      if (l > best_logit) {
        best_logit = l;
        best = static_cast<int>(c);
      }
    }
    correct += best == y[i];
  }
  return static_cast<double>(correct) / static_cast<double>(y.size());
}

TEST(HeadTrainer, LearnsFromEmbeddingsAndReportsTheDelta) {
  std::vector<float> x, tx;
  std::vector<int> y, ty;
  Separable(1000, 84, 10, &x, &y, 1);
  Separable(500, 84, 10, &tx, &ty, 2);
  const v1::Head global = ZeroHead(84, 10);
  v1::Head head = global;
  ASSERT_TRUE(TrainHead(&head, x, y, HeadTrainingTask{}).ok());
  EXPECT_GT(Accuracy(head, tx, ty), 0.95);
  const auto delta = HeadDelta(head, global);
  ASSERT_EQ(delta.size(), 84u * 10 + 10);
  EXPECT_EQ(delta[5], head.weights(5));
  EXPECT_EQ(delta[84 * 10 + 3], head.bias(3));
}

TEST(HeadTrainer, RefusesMismatchedInputAndLeavesTheHead) {
  v1::Head head = ZeroHead(4, 3);
  const v1::Head before = head;
  std::vector<float> x(8, 1.0f);
  EXPECT_EQ(TrainHead(&head, x, std::vector<int>{0, 1, 2}, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainHead(&head, x, std::vector<int>{0, 3}, {}).code(), absl::StatusCode::kInvalidArgument);
  HeadTrainingTask bad;
  bad.learning_rate = -1.0f;
  EXPECT_EQ(TrainHead(&head, x, std::vector<int>{0, 1}, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(head.SerializeAsString(), before.SerializeAsString());
}

}  // namespace
}  // namespace tinyfed::client
