// The round engine driven directly (no transport) on a FakeEnv clock: every
// phase transition of a selection, a SecAgg+ round and a plain round, and
// every deadline, without waiting on the wall clock.
#include "tinyfed/aggregator/round_engine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "aggregator/testing/test_federation.h"
#include "base/testing/fake_env.h"
#include "base/testing/value_or_die.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/random.h"

namespace tinyfed::aggregator {
namespace {

class RoundEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("round_engine_test_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto federation = testing::WriteTestFederation(dir_, "test");
    ASSERT_TRUE(federation.ok()) << federation.status();
    config_ = federation->config;
    config_.cohort_size = 4;
    config_.min_cohort = 3;
    config_.max_dropout = 0.4;
    config_.max_rounds = 5;
    config_.dp.bits = 16;
    config_.dp.noise_multiplier = 1.0;
    config_.dp.target_epsilon = 0.0;
    config_.dp.epsilon_budget = 1e6;
    config_.simulation_seed = 1;
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Start() {
    auto engine = RoundEngine::Create(config_, env_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    for (int i = 0; i < 4; ++i) {
      const std::string device = Device(i);
      keys_.emplace(device, models::SigningKey::Generate());
      auto token = engine_->devices()->IssueToken(device, absl::Hours(1));
      ASSERT_TRUE(token.ok());
      v1::EnrollRequest r;
      r.set_device_id(device);
      r.set_token(*token);
      r.set_device_public_key(models::KeyBytes(keys_.at(device).public_key()));
      r.set_proof(keys_.at(device).Sign(proto::EnrollmentProofMessage(device, *token)));
      ASSERT_TRUE(engine_->devices()->Enroll(r).ok());
    }
  }

  static std::string Device(int i) { return "clinic-" + std::to_string(i); }
  static v1::RequestHeader Header(const std::string& device, uint64_t round, v1::Phase phase) {
    v1::RequestHeader h;
    h.set_device_id(device);
    h.set_round_id(round);
    h.set_phase(phase);
    return h;
  }
  v1::CheckInResponse CheckIn(const std::string& device) {
    v1::CheckInRequest r;
    *r.mutable_header() = Header(device, 0, v1::PHASE_CHECK_IN);
    auto response = engine_->CheckIn(r);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::CheckInResponse();
  }
  absl::StatusOr<v1::AwaitResponse> Await(const std::string& device, uint64_t round, v1::Phase phase) {
    v1::AwaitRequest r;
    *r.mutable_header() = Header(device, round, phase);
    return engine_->Await(r);
  }
  absl::Status Submit(const std::string& device, uint64_t round, v1::Phase phase,
                      const v1::SecAggClientMessage& message) {
    v1::SubmitRequest r;
    *r.mutable_header() = Header(device, round, phase);
    *r.mutable_message() = message;
    return engine_->Submit(r).status();
  }
  std::vector<RoundRecord> Rounds() {
    auto state = base::testing::ValueOrDie(AggregatorState::Open(config_.state_dir), "opening the state");
    return base::testing::ValueOrDie(state->Rounds(), "reading the rounds");
  }
  // Admits clinic-0 .. clinic-(n-1); the round id.
  uint64_t Admit(int n) {
    uint64_t round = 0;
    for (int i = 0; i < n; ++i) {
      v1::CheckInResponse r = CheckIn(Device(i));
      EXPECT_TRUE(r.has_admitted()) << r.DebugString();
      round = r.admitted().round_id();
    }
    return round;
  }

  // The SecAgg+ side of each member, built from its task.
  struct Member {
    std::unique_ptr<secagg::Client> client;
    uint32_t id = 0;
  };
  std::map<std::string, Member> Members(uint64_t round, int n) {
    std::map<std::string, Member> members;
    for (int i = 0; i < n; ++i) {
      const v1::AwaitResponse task = base::testing::ValueOrDie(Await(Device(i), round, v1::PHASE_TASK), Device(i));
      EXPECT_TRUE(task.has_task()) << task.DebugString();
      const v1::RoundTask& t = task.task();
      const secagg::SecAggParams params =
          base::testing::ValueOrDie(secagg::ParamsOfTask(round, t.cohort_size(), t.secagg()), "the task's parameters");
      std::array<uint8_t, 32> seed{};
      seed[0] = static_cast<uint8_t>(i);
      // All-zero inputs: the DDG encoding of a zero update is zero.
      members[Device(i)] =
          Member{base::testing::ValueOrDie(
                     secagg::Client::Create(params, t.secagg_id(), std::vector<uint32_t>(t.secagg().vector_length(), 0),
                                            secagg::SeededRandom(seed)),
                     "a SecAgg+ client"),
                 t.secagg_id()};
    }
    return members;
  }
  void Advertise(uint64_t round, const std::string& device, Member& m) {
    auto message = m.client->AdvertiseKeys();
    ASSERT_TRUE(message.ok());
    v1::AdvertiseKeys* a = message->mutable_advertise_keys();
    a->set_signature(keys_.at(device).Sign(
        proto::AdvertiseKeysSigningMessage(round, m.id, device, a->encryption_public_key(), a->masking_public_key())));
    ASSERT_TRUE(Submit(device, round, v1::PHASE_ADVERTISE_KEYS, *message).ok());
  }
  // Answers `phase` for `device` with the server's message for it.
  void Answer(uint64_t round, const std::string& device, Member& m, v1::Phase phase) {
    auto await = Await(device, round, phase);
    ASSERT_TRUE(await.ok()) << await.status();
    ASSERT_TRUE(await->has_secagg()) << await->DebugString();
    auto reply = m.client->Handle(await->secagg());
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_TRUE(Submit(device, round, phase, *reply).ok());
  }

  std::filesystem::path dir_;
  Config config_;
  base::testing::FakeEnv env_;
  std::unique_ptr<RoundEngine> engine_;
  std::map<std::string, models::SigningKey> keys_;
};

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
