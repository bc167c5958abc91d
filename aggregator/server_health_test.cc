// grpc.health.v1 on the aggregator's port, as a probe sees it: SERVING once
// the server is up (the engine has loaded its state by then), NOT_SERVING
// while it drains, nothing once it is shut down.
#include <gtest/gtest.h>

#include "aggregator/testing/round_engine_fixture.h"
#include "tinyfed/aggregator/health_check.h"
#include "tinyfed/aggregator/server.h"

namespace tinyfed::aggregator {
namespace {

using ServerHealthTest = testing::RoundEngineFixture;

TEST_F(ServerHealthTest, ServingThenNotServingWhileDrainingThenGone) {
  Start();
  auto server = AggregatorServer::Start(engine_.get(), "127.0.0.1:0", config_.security, /*insecure=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  const HealthCheckOptions plaintext{.ca_certificate = {}, .insecure = true, .tls_server_name = {}};

  auto health = CheckHealth(address, plaintext);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, Health::kServing);
  EXPECT_NE(engine_->metrics().Render().find("tinyfed_serving 1\n"), std::string::npos);

  (*server)->Drain();
  health = CheckHealth(address, plaintext);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, Health::kNotServing);
  EXPECT_NE(engine_->metrics().Render().find("tinyfed_serving 0\n"), std::string::npos);
  // Draining still answers the gateways' calls.
  v1::CheckInRequest check_in;
  *check_in.mutable_header() = Header(Device(0), 0, v1::PHASE_CHECK_IN);
  EXPECT_TRUE(engine_->CheckIn(check_in).ok());

  (*server)->Shutdown();
  health = CheckHealth(address,
                       {.ca_certificate = {}, .insecure = true, .tls_server_name = {}, .timeout = absl::Seconds(1)});
  EXPECT_FALSE(health.ok());
}

TEST_F(ServerHealthTest, SighupLimitsAndDeadlinesAreTakenAndReported) {
  Start();
  auto server = AggregatorServer::Start(engine_.get(), "127.0.0.1:0", config_.security, /*insecure=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  Config fresh = config_;
  fresh.security.requests_per_minute = 5000;
  fresh.training_timeout = absl::Seconds(42);
  const std::vector<std::string> limits = (*server)->ReloadLimits(fresh.security);
  ASSERT_EQ(limits.size(), 1u);
  EXPECT_EQ(limits[0], "security.requests_per_minute 1200 -> 5000");
  EXPECT_TRUE((*server)->ReloadLimits(fresh.security).empty());  // nothing new the second time
  const std::vector<std::string> deadlines = engine_->ReloadDeadlines(fresh);
  ASSERT_EQ(deadlines.size(), 1u);
  EXPECT_EQ(deadlines[0], "deadlines.training 5m -> 42s");
  // The next round's task carries the new deadline.
  const uint64_t round = Admit(4);
  auto task = Await(Device(0), round, v1::PHASE_TASK);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->task().advertise_deadline_ms(), 42000u);
}

}  // namespace
}  // namespace tinyfed::aggregator
