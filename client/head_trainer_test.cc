#include "tinyfed/client/head_trainer.h"

#include <random>

#include "client/testing/heads.h"
#include "gtest/gtest.h"

namespace tinyfed::client {
namespace {

using testing::Accuracy;
using testing::Separable;
using testing::ZeroHead;

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
