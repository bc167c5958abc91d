// AggregatorState on its own: rounds, published models, optimizer moments,
// the population and telemetry survive reopening; a completion is atomic;
// rounds a dead process left running are aborted at the next start.
#include "tinyfed/aggregator/state.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace tinyfed::aggregator {
namespace {

class StateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / ("aggregator-state-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<AggregatorState> Open() {
    auto s = AggregatorState::Open(dir_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::filesystem::path dir_;
};

TEST_F(StateTest, RoundsModelsAndMomentsSurviveReopening) {
  {
    auto s = Open();
    EXPECT_FALSE(s->LatestModel()->has_value());
    ASSERT_TRUE(s->RecordModel({.version = 1, .round_id = 0, .bundle_sha256 = "h1", .file = dir_ / "v1"}).ok());
    EXPECT_EQ(*s->NextRoundId(), 1);
    ASSERT_TRUE(s->StartRound(1).ok());
    ASSERT_TRUE(s->UpdateRoundSelected(1, 6).ok());
    ASSERT_TRUE(s->CompleteRound({.round_id = 1,
                                  .state = "done",
                                  .selected = 6,
                                  .survivors = 5,
                                  .model_version = 2,
                                  .epsilon = 0.5,
                                  .reason = ""},
                                 {.version = 2, .round_id = 1, .bundle_sha256 = "h2", .file = dir_ / "v2"},
                                 {1.0f, 2.0f}, {3.0f})
                    .ok());
    ASSERT_TRUE(s->StartRound(2).ok());
    ASSERT_TRUE(s->AbortRound(2, "too few survivors").ok());
    EXPECT_TRUE(*s->AddDevice("clinic-1"));
    EXPECT_FALSE(*s->AddDevice("clinic-1"));
    EXPECT_TRUE(*s->AddDevice("clinic-2"));
    ASSERT_TRUE(s->RecordTelemetry("clinic-1", "{\"model_version\": 2}").ok());
  }
  auto s = Open();
  const auto latest = *s->LatestModel();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->version, 2u);
  EXPECT_EQ(latest->bundle_sha256, "h2");
  EXPECT_EQ(s->Models()->size(), 2u);
  const auto rounds = *s->Rounds();
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_EQ(rounds[0].state, "done");
  EXPECT_EQ(rounds[0].survivors, 5);
  EXPECT_EQ(rounds[0].epsilon, 0.5);
  EXPECT_EQ(rounds[1].state, "aborted");
  EXPECT_EQ(rounds[1].reason, "too few survivors");
  EXPECT_EQ(*s->CompletedRounds(), 1);
  EXPECT_EQ(*s->NextRoundId(), 3);  // round ids are never reused
  std::vector<float> m1, m2;
  ASSERT_TRUE(s->LoadOptimizer(&m1, &m2).ok());
  EXPECT_EQ(m1, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(m2, (std::vector<float>{3.0f}));
  EXPECT_EQ(*s->PopulationSize(), 2);
}

TEST_F(StateTest, ARoundLeftRunningIsAbortedAtTheNextStart) {
  {
    auto s = Open();
    ASSERT_TRUE(s->RecordModel({.version = 1, .round_id = 0, .bundle_sha256 = "h", .file = dir_ / "v1"}).ok());
    ASSERT_TRUE(s->StartRound(1).ok());
  }  // the process dies mid-round
  auto s = Open();
  EXPECT_EQ(*s->AbortUnfinishedRounds("the aggregator restarted"), 1);
  EXPECT_EQ(*s->AbortUnfinishedRounds("again"), 0);
  const auto rounds = *s->Rounds();
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, "aborted");
  EXPECT_EQ(rounds[0].reason, "the aggregator restarted");
  std::vector<float> m1 = {9.0f}, m2 = {9.0f};
  ASSERT_TRUE(s->LoadOptimizer(&m1, &m2).ok());
  EXPECT_TRUE(m1.empty() && m2.empty());  // no round completed
}

TEST_F(StateTest, ADirectoryThatCannotHoldTheStateIsNamed) {
  std::filesystem::create_directories(dir_.parent_path());
  { std::ofstream(dir_.string()) << "a file, not a directory"; }
  auto s = AggregatorState::Open(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(dir_.string()), std::string::npos) << s.status();
  std::filesystem::remove(dir_);
}

}  // namespace
}  // namespace tinyfed::aggregator
