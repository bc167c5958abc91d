#include "tinyfed/dp/rdp_accountant.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tinyfed::dp {
namespace {

// Published values (TensorFlow Privacy's accountant tests and its DP-SGD
// MNIST tutorial, with the improved RDP conversion).
TEST(RdpAccountant, ReproducesPublishedEpsilon) {
  const auto orders = DefaultOrders();
  auto rdp = SampledGaussianRdp(150.0 / 60000.0, 1.3, 6000, orders);
  ASSERT_TRUE(rdp.ok());
  auto spent = EpsilonFromRdp(orders, *rdp, 1e-5);
  ASSERT_TRUE(spent.ok());
  EXPECT_NEAR(spent->epsilon / 0.7242234026109595, 1.0, 1e-6) << spent->epsilon;
}

TEST(RdpAccountant, ReproducesPublishedRdpSequence) {
  const std::vector<double> orders = {1.5, 2.5, 5, 50, 100, std::numeric_limits<double>::infinity()};
  auto rdp = SampledGaussianRdp(0.01, 2.5, 50, orders);
  ASSERT_TRUE(rdp.ok());
  const std::vector<double> expected = {0.00065, 0.001085, 0.00218075, 0.023846, 167.416307};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR((*rdp)[i], expected[i], 5e-6) << orders[i];
  EXPECT_TRUE(std::isinf((*rdp)[5]));
}

TEST(RdpAccountant, FullBatchIsTheGaussianMechanism) {
  const std::vector<double> orders = {2.0, 3.5, 10.0};
  auto rdp = SampledGaussianRdp(1.0, 2.0, 3, orders);
  ASSERT_TRUE(rdp.ok());
  for (size_t i = 0; i < orders.size(); ++i) EXPECT_DOUBLE_EQ((*rdp)[i], 3 * orders[i] / 8.0);
}

TEST(RdpAccountant, NoiseSearchMeetsTheTarget) {
  const auto orders = DefaultOrders();
  auto z = NoiseMultiplierForEpsilon(0.01, 1000, 1e-5, 2.0, orders);
  ASSERT_TRUE(z.ok()) << z.status();
  auto eps_at = [&](double noise) {
    return EpsilonFromRdp(orders, *SampledGaussianRdp(0.01, noise, 1000, orders), 1e-5)->epsilon;
  };
  EXPECT_LE(eps_at(*z), 2.0);
  EXPECT_GT(eps_at(*z * 0.999), 2.0 - 0.01);
}

TEST(RdpAccountant, RejectsBadArguments) {
  const auto orders = DefaultOrders();
  EXPECT_EQ(SampledGaussianRdp(0.0, 1.0, 1, orders).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SampledGaussianRdp(1.5, 1.0, 1, orders).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SampledGaussianRdp(0.1, 0.0, 1, orders).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SampledGaussianRdp(0.1, 1.0, -1, orders).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<double> one = {2.0}, r = {0.1};
  EXPECT_EQ(EpsilonFromRdp(one, r, 0.0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EpsilonFromRdp(one, r, 1.0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(SampledGaussianRdp(0.1, -2.0, 1, orders).status().message().find("-2"), absl::string_view::npos);
}

}  // namespace
}  // namespace tinyfed::dp
