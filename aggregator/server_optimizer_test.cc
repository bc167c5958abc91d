#include "tinyfed/aggregator/server_optimizer.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tinyfed::aggregator {
namespace {

ServerOptimizer Make(ServerOptimizerKind kind, double lr, size_t d = 1) {
  ServerOptimizerOptions o;
  o.kind = kind;
  o.learning_rate = lr;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.tau = 0.01;
  return *ServerOptimizer::Create(o, d);
}

TEST(ServerOptimizer, FedAvgAddsTheScaledMeanDelta) {
  auto opt = Make(ServerOptimizerKind::kFedAvg, 0.5, 2);
  std::vector<float> x = {1.0f, -1.0f};
  ASSERT_TRUE(opt.Apply(x, std::vector<float>{2.0f, 4.0f}).ok());
  EXPECT_FLOAT_EQ(x[0], 2.0f);
  EXPECT_FLOAT_EQ(x[1], 1.0f);
}

TEST(ServerOptimizer, FedAvgMAccumulatesMomentum) {
  auto opt = Make(ServerOptimizerKind::kFedAvgM, 1.0);
  std::vector<float> x = {0.0f};
  const std::vector<float> d = {1.0f};
  ASSERT_TRUE(opt.Apply(x, d).ok());  // m = 1
  ASSERT_TRUE(opt.Apply(x, d).ok());  // m = 1.9
  EXPECT_NEAR(x[0], 2.9f, 1e-6);
}

// One step by hand from Reddi et al. Algorithm 2, v_{-1} = tau^2.
TEST(ServerOptimizer, FedAdamAndFedYogiFollowThePaper) {
  for (auto kind : {ServerOptimizerKind::kFedAdam, ServerOptimizerKind::kFedYogi}) {
    auto opt = Make(kind, 0.1);
    std::vector<float> x = {0.0f};
    ASSERT_TRUE(opt.Apply(x, std::vector<float>{0.5f}).ok());
    const double m = 0.1 * 0.5, tau2 = 1e-4, d2 = 0.25;
    const double v =
        kind == ServerOptimizerKind::kFedAdam ? 0.99 * tau2 + 0.01 * d2 : tau2 - 0.01 * d2 * (tau2 > d2 ? 1 : -1);
    EXPECT_NEAR(x[0], 0.1 * m / (std::sqrt(v) + 0.01), 1e-6);
    EXPECT_NEAR(opt.second_moment()[0], v, 1e-5 * v);  // float32 state
  }
}

TEST(ServerOptimizer, AllConvergeOnAQuadratic) {
  // Each round the "clients" report delta = -grad of 0.5 (x - 3)^2 = 3 - x.
  for (auto kind : {ServerOptimizerKind::kFedAvg, ServerOptimizerKind::kFedAvgM, ServerOptimizerKind::kFedAdam,
                    ServerOptimizerKind::kFedYogi}) {
    auto opt = Make(kind, kind == ServerOptimizerKind::kFedAvg || kind == ServerOptimizerKind::kFedAvgM ? 0.1 : 0.05);
    std::vector<float> x = {0.0f};
    for (int round = 0; round < 500; ++round) ASSERT_TRUE(opt.Apply(x, std::vector<float>{3.0f - x[0]}).ok());
    EXPECT_NEAR(x[0], 3.0f, 0.05f) << static_cast<int>(kind);
  }
}

TEST(ServerOptimizer, StateRestoresAndBadInputIsRefused) {
  auto a = Make(ServerOptimizerKind::kFedAdam, 0.1, 3);
  std::vector<float> x = {0, 0, 0}, y = {0, 0, 0};
  const std::vector<float> d = {0.1f, -0.2f, 0.3f};
  ASSERT_TRUE(a.Apply(x, d).ok());
  auto b = Make(ServerOptimizerKind::kFedAdam, 0.1, 3);
  ASSERT_TRUE(b.Restore(a.first_moment(), a.second_moment()).ok());
  y = x;
  ASSERT_TRUE(a.Apply(x, d).ok());
  ASSERT_TRUE(b.Apply(y, d).ok());
  EXPECT_EQ(x, y);
  EXPECT_EQ(a.Apply(x, std::vector<float>{1.0f}).code(), absl::StatusCode::kInvalidArgument);
  const auto before = x;
  EXPECT_EQ(a.Apply(x, std::vector<float>{0.0f, NAN, 0.0f}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(x, before);
  EXPECT_FALSE(b.Restore({1.0f}, {1.0f}).ok());
  EXPECT_FALSE(ServerOptimizer::Create({.kind = ServerOptimizerKind::kFedAdam, .learning_rate = 0.0}, 3).ok());
  EXPECT_FALSE(ParseServerOptimizer("sgd").ok());
  EXPECT_EQ(*ParseServerOptimizer("fedyogi"), ServerOptimizerKind::kFedYogi);
}

}  // namespace
}  // namespace tinyfed::aggregator
