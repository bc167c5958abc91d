// The round engine's canary rollout (config.h, RolloutConfig): who is told
// of a new version, how the canary's reports promote it or roll it back as
// a higher version with the previous weights, the operator's override, the
// check-in window, and a restart in the middle of a canary.
#include <gtest/gtest.h>

#include "aggregator/testing/round_engine_fixture.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/state.h"

namespace tinyfed::aggregator {
namespace {

class RolloutTest : public testing::RoundEngineFixture {
 protected:
  void SetUp() override {
    RoundEngineFixture::SetUp();
    config_.rollout.canary_devices = {Device(0)};
    config_.rollout.canary_reports = 1;
  }

  // Runs a round of all four devices to its end; the version it published.
  uint64_t CompleteRound() {
    const uint64_t round = Admit(4);
    auto members = Members(round, 4);
    for (auto& [device, m] : members) Advertise(round, device, m);
    for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
      for (auto& [device, m] : members) Answer(round, device, m, phase);
    }
    auto result = Await(Device(0), round, v1::PHASE_RESULT);
    EXPECT_TRUE(result.ok() && result->has_result()) << (result.ok() ? result->DebugString() : "");
    last_round_ = round;
    return result.ok() ? result->result().published().version() : 0;
  }

  v1::CheckInResponse CheckInRunning(const std::string& device, uint64_t installed) {
    v1::CheckInRequest r;
    *r.mutable_header() = Header(device, 0, v1::PHASE_CHECK_IN);
    r.set_installed_model_version(installed);
    auto response = engine_->CheckIn(r);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::CheckInResponse();
  }

  // A report of the new model `version` over `replaced` on 100 held-out samples.
  absl::Status Report(const std::string& device, uint64_t version, uint64_t replaced, float before, float after,
                      uint32_t worse, uint32_t better) {
    v1::TelemetryRequest r;
    *r.mutable_header() = Header(device, 0, v1::PHASE_TELEMETRY);
    v1::Telemetry& t = *r.mutable_telemetry();
    t.set_model_version(version);
    t.set_replaced_model_version(replaced);
    t.set_holdout_samples(100);
    t.set_holdout_accuracy(after);
    t.set_replaced_holdout_accuracy(before);
    t.set_regressions(worse);
    t.set_improvements(better);
    for (int bin = 0; bin < 10; ++bin) {
      t.add_confidence_histogram(bin == 9 ? 100 : 0);
      t.add_replaced_confidence_histogram(bin == 9 ? 100 : 0);
    }
    return engine_->ReportTelemetry(r).status();
  }

  RolloutRecord Latest() {
    auto state = AggregatorState::Open(config_.state_dir);
    EXPECT_TRUE(state.ok());
    auto rollouts = (*state)->Rollouts(1);
    EXPECT_TRUE(rollouts.ok() && !rollouts->empty());
    return rollouts.ok() && !rollouts->empty() ? rollouts->front() : RolloutRecord();
  }

  uint64_t last_round_ = 0;
};

TEST_F(RolloutTest, OnlyTheCanaryHearsOfANewVersionAndNoRoundStartsMeanwhile) {
  Start();
  ASSERT_EQ(CompleteRound(), 2u);
  EXPECT_EQ(engine_->canary_version(), 2u);
  // Members outside the canary are told of the model they have.
  EXPECT_EQ(Await(Device(1), last_round_, v1::PHASE_RESULT)->result().published().version(), 1u);
  EXPECT_EQ(Await(Device(0), last_round_, v1::PHASE_RESULT)->result().published().version(), 2u);
  EXPECT_EQ(CheckInRunning(Device(2), 1).latest_model().version(), 1u);
  // A canary gateway behind the previous model catches up to it first.
  EXPECT_EQ(CheckInRunning(Device(0), 0).latest_model().version(), 1u);
  const v1::CheckInResponse canary = CheckInRunning(Device(0), 1);
  EXPECT_EQ(canary.latest_model().version(), 2u);
  ASSERT_TRUE(canary.has_retry_later());
  EXPECT_NE(canary.retry_later().reason().find("model v2 is in canary"), std::string::npos)
      << canary.retry_later().reason();
}

TEST_F(RolloutTest, ARegressionRollsBackAsAHigherVersionCarryingThePreviousWeights) {
  Start();
  const v1::Head before = engine_->latest_head();
  ASSERT_EQ(CompleteRound(), 2u);
  CheckInRunning(Device(0), 1);
  // A report of the replaced head other than v1 does not count.
  ASSERT_TRUE(Report(Device(0), 2, 0, 0.8f, 0.4f, 40, 0).ok());
  EXPECT_EQ(engine_->canary_version(), 2u);
  ASSERT_TRUE(Report(Device(0), 2, 1, 0.8f, 0.5f, 35, 5).ok());
  EXPECT_EQ(engine_->canary_version(), 0u);
  EXPECT_EQ(engine_->latest_model().version(), 3u);
  EXPECT_EQ(engine_->latest_head().SerializeAsString(), before.SerializeAsString());
  const RolloutRecord r = Latest();
  EXPECT_EQ(r.version, 2u);
  EXPECT_EQ(r.state, "rolled_back");
  EXPECT_EQ(r.decided_by, "telemetry");
  EXPECT_EQ(r.rollback_version, 3u);
  EXPECT_EQ(r.canary, std::vector<std::string>{Device(0)});
  EXPECT_NE(r.reason.find("held-out accuracy 80.0% -> 50.0%"), std::string::npos) << r.reason;
  // Everyone moves on to v3, and rounds go on; v3 itself goes through no canary.
  const v1::CheckInResponse next = CheckInRunning(Device(2), 1);
  EXPECT_EQ(next.latest_model().version(), 3u);
  EXPECT_TRUE(next.has_admitted()) << next.DebugString();
}

TEST_F(RolloutTest, NoRegressionPromotesAndTheOperatorMayOverride) {
  Start();
  ASSERT_EQ(CompleteRound(), 2u);
  CheckInRunning(Device(0), 1);
  ASSERT_TRUE(Report(Device(0), 2, 1, 0.8f, 0.82f, 3, 5).ok());
  EXPECT_EQ(engine_->canary_version(), 0u);
  EXPECT_EQ(Latest().state, "promoted");
  EXPECT_EQ(CheckInRunning(Device(3), 1).latest_model().version(), 2u);

  ASSERT_EQ(CompleteRound(), 3u);
  {
    auto state = AggregatorState::Open(config_.state_dir);
    ASSERT_TRUE(state.ok());
    EXPECT_EQ((*state)->RequestRolloutDecision("sideways").code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE((*state)->RequestRolloutDecision("rollback").ok());
  }
  engine_->Tick();
  EXPECT_EQ(engine_->latest_model().version(), 4u);
  const RolloutRecord r = Latest();
  EXPECT_EQ(r.state, "rolled_back");
  EXPECT_EQ(r.decided_by, "operator");
  auto state = AggregatorState::Open(config_.state_dir);
  EXPECT_EQ((*state)->RequestRolloutDecision("promote").code(), absl::StatusCode::kFailedPrecondition)
      << "nothing is in canary now";
}

TEST_F(RolloutTest, ACanaryWithoutReportsIsRolledBackAfterItsCheckIns) {
  config_.rollout.canary_check_ins = 3;
  Start();
  ASSERT_EQ(CompleteRound(), 2u);
  // Only the canary's own check-ins count; everyone asks again after a
  // selection deadline meanwhile.
  for (int i = 1; i < 4; ++i) {
    const v1::CheckInResponse r = CheckInRunning(Device(i), 1);
    EXPECT_EQ(r.retry_later().delay_ms(), absl::ToInt64Milliseconds(config_.selection_timeout));
  }
  CheckInRunning(Device(0), 1);
  CheckInRunning(Device(0), 2);
  EXPECT_EQ(engine_->canary_version(), 2u);
  CheckInRunning(Device(0), 2);
  EXPECT_EQ(engine_->canary_version(), 0u);
  EXPECT_EQ(Latest().decided_by, "check-ins");
  EXPECT_EQ(engine_->latest_model().version(), 3u);
}

TEST_F(RolloutTest, ARestartKeepsTheCanaryAndItsAudience) {
  Start();
  ASSERT_EQ(CompleteRound(), 2u);
  Restart();
  EXPECT_EQ(engine_->canary_version(), 2u);
  EXPECT_EQ(CheckInRunning(Device(1), 1).latest_model().version(), 1u);
  EXPECT_EQ(CheckInRunning(Device(0), 1).latest_model().version(), 2u);
  ASSERT_TRUE(Report(Device(0), 2, 1, 0.8f, 0.8f, 0, 0).ok());
  EXPECT_EQ(Latest().state, "promoted");
}

}  // namespace
}  // namespace tinyfed::aggregator
