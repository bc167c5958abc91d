// The round engine driven directly (no transport) on a FakeEnv clock: every
// phase transition of a selection, a SecAgg+ round and a plain round, and
// every deadline, without waiting on the wall clock.
#include "tinyfed/aggregator/round_engine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "aggregator/testing/round_engine_fixture.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/head_release.h"

namespace tinyfed::aggregator {
namespace {

using RoundEngineTest = testing::RoundEngineFixture;

TEST_F(RoundEngineTest, SelectionClosesWhenTheCohortIsFull) {
  Start();
  const uint64_t round = Admit(4);
  EXPECT_EQ(round, 1u);
  // Full: the round runs and a fifth device is told to come back.
  v1::CheckInRequest late;
  *late.mutable_header() = Header("late", 0, v1::PHASE_CHECK_IN);
  auto response = engine_->CheckIn(late);
  ASSERT_TRUE(response.ok());
  EXPECT_TRUE(response->has_retry_later());
  auto task = Await(Device(0), round, v1::PHASE_TASK);
  ASSERT_TRUE(task.ok());
  ASSERT_TRUE(task->has_task());
  EXPECT_EQ(task->task().cohort_size(), 4u);
  EXPECT_EQ(task->task().advertise_deadline_ms(), absl::ToInt64Milliseconds(config_.training_timeout));
}

TEST_F(RoundEngineTest, SelectionWaitsForMinCohortPastItsDeadline) {
  Start();
  const uint64_t round = Admit(2);
  auto waiting = Await(Device(0), round, v1::PHASE_TASK);
  ASSERT_TRUE(waiting.ok());
  EXPECT_TRUE(waiting->has_wait());
  // Two of min_cohort 3 at the deadline: the selection goes on.
  env_.Advance(config_.selection_timeout + absl::Seconds(1));
  engine_->Tick();
  waiting = Await(Device(0), round, v1::PHASE_TASK);
  ASSERT_TRUE(waiting.ok());
  EXPECT_TRUE(waiting->has_wait()) << waiting->DebugString();
  // A third arrives: at the next deadline the round starts with three.
  Admit(3);
  engine_->Tick();
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_TASK)->has_wait());
  env_.Advance(config_.selection_timeout);
  engine_->Tick();
  auto task = Await(Device(2), round, v1::PHASE_TASK);
  ASSERT_TRUE(task.ok());
  ASSERT_TRUE(task->has_task()) << task->DebugString();
  EXPECT_EQ(task->task().cohort_size(), 3u);
}

TEST_F(RoundEngineTest, ASecAggRoundWalksEveryPhaseAndPublishes) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (auto& [device, m] : members) {
    // Before the phase: a wait; after the keys: the next phase is open.
    EXPECT_TRUE(Await(device, round, v1::PHASE_SHARE_KEYS)->has_wait());
    Advertise(round, device, m);
  }
  for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
    for (auto& [device, m] : members) Answer(round, device, m, phase);
  }
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_result()) << result->DebugString();
  EXPECT_EQ(result->result().survivors(), 4u);
  EXPECT_EQ(result->result().published().version(), 2u);
  EXPECT_GT(result->result().epsilon_spent(), 0.0);
  EXPECT_EQ(engine_->latest_model().version(), 2u);
  const auto rounds = Rounds();
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, "done");
  EXPECT_EQ(rounds[0].survivors, 4);
}

TEST_F(RoundEngineTest, EachSecAggDeadlineDropsTheSilentMember) {
  config_.cohort_size = 4;
  config_.min_cohort = 2;
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  // clinic-3 never advertises: dropped at the training deadline.
  for (int i = 0; i < 3; ++i) Advertise(round, Device(i), members[Device(i)]);
  engine_->Tick();  // before the deadline: nothing moves
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_SHARE_KEYS)->has_wait());
  env_.Advance(config_.training_timeout);
  engine_->Tick();
  auto dropped = Await(Device(3), round, v1::PHASE_SHARE_KEYS);
  ASSERT_TRUE(dropped.ok());
  EXPECT_TRUE(dropped->has_aborted()) << dropped->DebugString();
  for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
    for (int i = 0; i < 3; ++i) Answer(round, Device(i), members[Device(i)], phase);
  }
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_result()) << result->DebugString();
  EXPECT_EQ(result->result().survivors(), 3u);
}

TEST_F(RoundEngineTest, TheMaskedInputDeadlineLeavesTheSilentMemberOutOfTheSum) {
  config_.min_cohort = 2;
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (auto& [device, m] : members) Advertise(round, device, m);
  for (auto& [device, m] : members) Answer(round, device, m, v1::PHASE_SHARE_KEYS);
  for (int i = 0; i < 3; ++i) Answer(round, Device(i), members[Device(i)], v1::PHASE_MASKED_INPUT);
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_UNMASKING)->has_wait());
  env_.Advance(config_.masked_input_timeout - absl::Seconds(1));
  engine_->Tick();
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_UNMASKING)->has_wait());
  env_.Advance(absl::Seconds(1));
  engine_->Tick();
  EXPECT_TRUE(Await(Device(3), round, v1::PHASE_UNMASKING)->has_aborted());
  for (int i = 0; i < 3; ++i) Answer(round, Device(i), members[Device(i)], v1::PHASE_UNMASKING);
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_result()) << result->DebugString();
  EXPECT_EQ(result->result().survivors(), 3u);
}

TEST_F(RoundEngineTest, TheUnmaskingDeadlineKeepsTheSilentMembersInput) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (auto& [device, m] : members) Advertise(round, device, m);
  for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT}) {
    for (auto& [device, m] : members) Answer(round, device, m, phase);
  }
  // clinic-3 sent its masked input, then went silent.
  for (int i = 0; i < 3; ++i) Answer(round, Device(i), members[Device(i)], v1::PHASE_UNMASKING);
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_RESULT)->has_wait());
  env_.Advance(config_.unmasking_timeout);
  engine_->Tick();
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_result()) << result->DebugString();
  EXPECT_EQ(result->result().survivors(), 4u);
}

TEST_F(RoundEngineTest, ARoundWithTooFewAtADeadlineAbortsAndTheNextStarts) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  Advertise(round, Device(0), members[Device(0)]);
  env_.Advance(config_.training_timeout);
  engine_->Tick();
  auto aborted = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(aborted.ok());
  ASSERT_TRUE(aborted->has_aborted()) << aborted->DebugString();
  EXPECT_EQ(engine_->latest_model().version(), 1u);
  const auto rounds = Rounds();
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, "aborted");
  EXPECT_FALSE(rounds[0].reason.empty());
  // The next check-in opens round 2.
  EXPECT_EQ(CheckIn(Device(1)).admitted().round_id(), round + 1);
}

TEST_F(RoundEngineTest, APlainRoundClosesWhenAllUpdatesArriveOrAtItsDeadline) {
  config_.secure_aggregation = false;
  config_.dp.mode = DpMode::kOff;
  config_.dp.noise_multiplier = 0.0;
  Start();
  const size_t dimension =
      models::testing::TinyClassifier().head().weights_size() + models::testing::TinyClassifier().head().bias_size();
  auto update = [&](const std::string& device, uint64_t round) {
    v1::SubmitRequest r;
    *r.mutable_header() = Header(device, round, v1::PHASE_UPDATE);
    r.mutable_update()->set_round_id(round);
    r.mutable_update()->set_dimension(static_cast<uint32_t>(dimension));
    std::vector<float> values(dimension, 0.01f);
    r.mutable_update()->mutable_dense()->set_values(
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    return engine_->Submit(r).status();
  };
  // Round 1: all four send; the last update closes it.
  uint64_t round = Admit(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(Await(Device(i), round, v1::PHASE_TASK)->has_task());
    EXPECT_TRUE(Await(Device(i), round, v1::PHASE_RESULT)->has_wait());
    ASSERT_TRUE(update(Device(i), round).ok());
    // A retry of the same update is acknowledged, once the round is over too.
    ASSERT_TRUE(update(Device(i), round).ok() || i == 3);
  }
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result->has_result()) << result->DebugString();
  EXPECT_EQ(result->result().survivors(), 4u);
  EXPECT_EQ(engine_->latest_model().version(), 2u);
  // Round 2: three send; the fourth is dropped at the training deadline.
  round = Admit(4);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(update(Device(i), round).ok());
  engine_->Tick();
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_RESULT)->has_wait());
  env_.Advance(config_.training_timeout);
  engine_->Tick();
  result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result->has_result()) << result->DebugString();
  EXPECT_EQ(result->result().survivors(), 3u);
  EXPECT_EQ(engine_->latest_model().version(), 3u);
  // Round 3: two of min_cohort 3 by the deadline: aborted, nothing published.
  round = Admit(4);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(update(Device(i), round).ok());
  env_.Advance(config_.training_timeout);
  engine_->Tick();
  result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result->has_aborted()) << result->DebugString();
  EXPECT_EQ(engine_->latest_model().version(), 3u);
}

// A round changes only the head: gateways that have the backbone may fetch
// the model's SignedHead, a fraction of the model, which rebuilds on their
// backbone the very SignedBundle a whole download gives; an older model's
// head is served from its file.
TEST_F(RoundEngineTest, ARoundsModelCanBeFetchedAsItsHeadAlone) {
  config_.secure_aggregation = false;
  config_.dp.mode = DpMode::kOff;
  config_.dp.noise_multiplier = 0.0;
  Start();
  auto fetch = [&](uint64_t version, bool head_only) {
    std::string bytes;
    for (;;) {
      v1::ModelChunkRequest r;
      *r.mutable_header() = Header(Device(0), 0, v1::PHASE_MODEL_DOWNLOAD);
      r.set_version(version);
      r.set_offset(bytes.size());
      r.set_head_only(head_only);
      r.set_max_bytes(1000);
      absl::StatusOr<v1::ModelChunk> chunk = engine_->GetModelChunk(r);
      EXPECT_TRUE(chunk.ok()) << chunk.status();
      if (!chunk.ok() || chunk->data().empty()) return bytes;
      bytes += chunk->data();
      if (bytes.size() == chunk->total_size()) return bytes;
    }
  };
  const v1::ModelRef first = engine_->latest_model();
  const std::string v1_blob = fetch(1, false);
  uint64_t round = Admit(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(Await(Device(i), round, v1::PHASE_TASK)->has_task());
    v1::SubmitRequest r;
    *r.mutable_header() = Header(Device(i), round, v1::PHASE_UPDATE);
    r.mutable_update()->set_round_id(round);
    const std::vector<float> values(engine_->latest_head().weights_size() + engine_->latest_head().bias_size(), 0.01f);
    r.mutable_update()->set_dimension(static_cast<uint32_t>(values.size()));
    r.mutable_update()->mutable_dense()->set_values(
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    ASSERT_TRUE(engine_->Submit(r).ok());
  }
  const v1::ModelRef second = engine_->latest_model();
  ASSERT_EQ(second.version(), 2u);
  EXPECT_EQ(second.backbone_sha256(), first.backbone_sha256());
  EXPECT_LT(second.head_download_size(), second.download_size());

  v1::SignedBundle installed, whole;
  ASSERT_TRUE(installed.ParseFromString(v1_blob));
  const std::string v2_blob = fetch(2, false);
  ASSERT_TRUE(whole.ParseFromString(v2_blob));
  v1::SignedHead head;
  ASSERT_TRUE(head.ParseFromString(fetch(2, true)));
  EXPECT_EQ(head.ByteSizeLong(), second.head_download_size());
  auto backbone = models::DecodeBundleFile(installed.bundle());
  ASSERT_TRUE(backbone.ok());
  auto rebuilt = models::RebuildSignedBundle(head, *backbone);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_EQ(rebuilt->SerializeAsString(), v2_blob);

  v1::SignedHead older;  // from model v1's file
  ASSERT_TRUE(older.ParseFromString(fetch(1, true)));
  EXPECT_EQ(models::RebuildSignedBundle(older, *backbone)->SerializeAsString(), v1_blob);
}

TEST_F(RoundEngineTest, ARestartedMemberRejoinsOnlyBeforeItsFirstMessage) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  EXPECT_TRUE(CheckIn(Device(0)).has_admitted());
  Advertise(round, Device(0), members[Device(0)]);
  EXPECT_TRUE(CheckIn(Device(0)).has_retry_later());
  EXPECT_TRUE(CheckIn("outsider").has_retry_later());
}

TEST_F(RoundEngineTest, TheReleaseIsReSignedOnceHalfItsLifeHasPassed) {
  Start();
  auto first = engine_->latest_model();
  env_.Advance(config_.security.release_expiry / 2 - absl::Minutes(1));
  engine_->Tick();
  // The model is the same; only its release (and so its download) changes.
  EXPECT_EQ(engine_->latest_model().download_sha256(), first.download_sha256());
  env_.Advance(absl::Minutes(2));
  engine_->Tick();
  EXPECT_EQ(engine_->latest_model().version(), first.version());
  EXPECT_EQ(engine_->latest_model().bundle_sha256(), first.bundle_sha256());
  EXPECT_NE(engine_->latest_model().download_sha256(), first.download_sha256());
}

}  // namespace
}  // namespace tinyfed::aggregator
