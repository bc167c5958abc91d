// A round engine killed (dropped without flushing) at every point of a round
// and opened again on the same state directory: the round goes on from its
// journal with the members' SecAgg+ state kept in memory, and publishes the
// exact sum of its survivors, charged once.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "SQLiteCpp/SQLiteCpp.h"
#include "aggregator/testing/round_engine_fixture.h"
#include "aggregator/testing/round_engine_peer.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/dp/ledger.h"

namespace tinyfed::aggregator {
namespace {

class RoundEngineResumeTest : public testing::RoundEngineFixture {
 protected:
  // Restarts the engine and watches the sums of the rounds it ends.
  void Kill() {
    Restart();
    testing::RoundEnginePeer::ObserveSecureSums(
        *engine_, [this](int64_t, std::span<const uint32_t> sum, const std::vector<std::string>& survivors) {
          sum_.assign(sum.begin(), sum.end());
          survivors_ = survivors;
        });
  }
  // The sum the members' inputs make, mod 2^bits.
  std::vector<uint32_t> ExpectedSum(const std::map<std::string, Member>& members) const {
    std::vector<uint32_t> sum(members.begin()->second.input.size(), 0);
    const uint32_t mask = (uint32_t{1} << config_.dp.bits) - 1;
    for (const auto& [device, m] : members) {
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = (sum[j] + m.input[j]) & mask;
    }
    return sum;
  }
  std::vector<dp::PrivacyCharge> Charges() const {
    auto ledger = base::testing::ValueOrDie(
        dp::PrivacyLedger::Open(config_.state_dir / "ledger.db", {.epsilon = 1e6, .delta = config_.dp.delta}),
        "the ledger");
    return base::testing::ValueOrDie(ledger->Charges(), "the charges");
  }

  std::vector<uint32_t> sum_;
  std::vector<std::string> survivors_;
};

// Where a kill lands: after `admitted` check-ins, or after `answered` members
// answered phase `phase` (advertise_keys .. unmasking).
struct KillPoint {
  int admitted = 4;
  v1::Phase phase = v1::PHASE_UNSPECIFIED;
  int answered = 0;
};

TEST_F(RoundEngineResumeTest, AKillAnywhereInARoundIsResumedAndPublishesTheExactSumChargedOnce) {
  const std::vector<KillPoint> points = {
      {.admitted = 2},
      {.admitted = 4},
      {.phase = v1::PHASE_ADVERTISE_KEYS, .answered = 2},
      {.phase = v1::PHASE_ADVERTISE_KEYS, .answered = 4},
      {.phase = v1::PHASE_SHARE_KEYS, .answered = 1},
      {.phase = v1::PHASE_SHARE_KEYS, .answered = 4},
      {.phase = v1::PHASE_MASKED_INPUT, .answered = 3},
      {.phase = v1::PHASE_MASKED_INPUT, .answered = 4},
      {.phase = v1::PHASE_UNMASKING, .answered = 2},
  };
  config_.max_rounds = 0;
  Start();
  uint64_t version = 1;
  for (const KillPoint& kill : points) {
    SCOPED_TRACE(::testing::Message() << "kill after " << kill.admitted << " admitted, " << kill.answered << " of "
                                      << v1::Phase_Name(kill.phase));
    sum_.clear();
    uint64_t round = 0;
    for (int i = 0; i < 4; ++i) {
      if (i == kill.admitted) Kill();
      const v1::CheckInResponse r = CheckIn(Device(i));
      ASSERT_TRUE(r.has_admitted()) << r.DebugString();
      round = r.admitted().round_id();
    }
    if (kill.phase == v1::PHASE_UNSPECIFIED && kill.admitted == 4) Kill();  // the cohort is drawn
    std::map<std::string, Member> members = Members(round, 4, /*distinct=*/true);
    for (v1::Phase phase :
         {v1::PHASE_ADVERTISE_KEYS, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
      int answered = 0;
      std::optional<std::pair<std::string, v1::SecAggClientMessage>> last;
      for (auto& [device, m] : members) {
        if (phase == kill.phase && answered == kill.answered) {
          Kill();
          // The last member's acknowledgement was lost in the kill: it sends
          // the same bytes again, acknowledged once more.
          if (last) {
            EXPECT_TRUE(Submit(last->first, round, phase, last->second).ok());
          }
        }
        v1::SecAggClientMessage message;
        if (phase == v1::PHASE_ADVERTISE_KEYS) {
          message = Advertise(round, device, m);
        } else {
          auto await = Await(device, round, phase);
          ASSERT_TRUE(await.ok() && await->has_secagg()) << (await.ok() ? await->DebugString() : "");
          message = base::testing::ValueOrDie(m.client->Handle(await->secagg()), device);
          ASSERT_TRUE(Submit(device, round, phase, message).ok());
        }
        last.emplace(device, message);
        ++answered;
      }
      if (phase == kill.phase && answered == kill.answered) {
        Kill();
        // The last message closed the phase; its acknowledgement was lost:
        // the same bytes again are acknowledged though the phase has moved on.
        EXPECT_TRUE(Submit(last->first, round, phase, last->second).ok()) << v1::Phase_Name(phase);
      }
    }
    auto result = Await(Device(0), round, v1::PHASE_RESULT);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->has_result()) << result->DebugString();
    EXPECT_EQ(result->result().survivors(), 4u);
    EXPECT_EQ(result->result().published().version(), ++version);
    if (kill.phase != v1::PHASE_UNSPECIFIED || kill.admitted < 4) {
      EXPECT_EQ(sum_, ExpectedSum(members));
      EXPECT_EQ(survivors_.size(), 4u);
    }
  }
  // Nothing aborted, one charge a published round.
  for (const RoundRecord& r : Rounds()) EXPECT_EQ(r.state, "done") << "round " << r.round_id << ": " << r.reason;
  EXPECT_EQ(Rounds().size(), points.size());
  EXPECT_EQ(Charges().size(), points.size());
}

TEST_F(RoundEngineResumeTest, TheOpenPhaseGetsItsWholeDeadlineAgainAndThenDropsTheSilent) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (int i = 0; i < 3; ++i) Advertise(round, Device(i), members[Device(i)]);
  env_.Advance(config_.training_timeout - absl::Seconds(1));
  Kill();
  EXPECT_NE(engine_->metrics().Render().find("tinyfed_rounds_resumed_total 1"), std::string::npos);
  // The deadline that was one second away is a whole training timeout away.
  env_.Advance(config_.training_timeout - absl::Seconds(1));
  engine_->Tick();
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_SHARE_KEYS)->has_wait());
  env_.Advance(absl::Seconds(2));
  engine_->Tick();
  auto dropped = Await(Device(3), round, v1::PHASE_SHARE_KEYS);
  ASSERT_TRUE(dropped.ok());
  EXPECT_TRUE(dropped->has_aborted()) << dropped->DebugString();
  EXPECT_TRUE(Await(Device(0), round, v1::PHASE_SHARE_KEYS)->has_secagg());
}

TEST_F(RoundEngineResumeTest, AJournaledDeadlineIsReplayedAtItsTime) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (int i = 0; i < 3; ++i) Advertise(round, Device(i), members[Device(i)]);
  env_.Advance(config_.training_timeout);
  engine_->Tick();  // clinic-3 dropped
  Answer(round, Device(0), members[Device(0)], v1::PHASE_SHARE_KEYS);
  Kill();
  auto dropped = Await(Device(3), round, v1::PHASE_SHARE_KEYS);
  ASSERT_TRUE(dropped.ok());
  EXPECT_TRUE(dropped->has_aborted()) << dropped->DebugString();
  for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
    for (int i = phase == v1::PHASE_SHARE_KEYS ? 1 : 0; i < 3; ++i) Answer(round, Device(i), members[Device(i)], phase);
  }
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok() && result->has_result()) << (result.ok() ? result->DebugString() : "");
  EXPECT_EQ(result->result().survivors(), 3u);
}

// A trusted-aggregator round with central noise: the updates taken before
// the kill are replayed, and the resumed round publishes the very model the
// unkilled one does (same simulation seed, so the same noise). Seeds drawn
// from real randomness are journaled instead; bench/aggregator_kills.sh
// runs without a simulation seed and checks every resumed sum exactly.
TEST_F(RoundEngineResumeTest, APlainRoundWithCentralNoiseResumesToTheSameModel) {
  config_.secure_aggregation = false;
  config_.dp.mode = DpMode::kCentral;
  config_.dp.noise_multiplier = 0.5;
  const size_t dimension =
      models::testing::TinyClassifier().head().weights_size() + models::testing::TinyClassifier().head().bias_size();
  auto update = [&](int i, uint64_t round) {
    v1::SubmitRequest r;
    *r.mutable_header() = Header(Device(i), round, v1::PHASE_UPDATE);
    r.mutable_update()->set_round_id(round);
    r.mutable_update()->set_dimension(static_cast<uint32_t>(dimension));
    std::vector<float> values(dimension, 0.01f * static_cast<float>(i + 1));
    r.mutable_update()->mutable_dense()->set_values(
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    return engine_->Submit(r).status();
  };
  // Two runs from the same state and simulation seed, one killed midway.
  std::vector<v1::Head> heads;
  for (bool kill : {false, true}) {
    std::filesystem::remove_all(config_.state_dir);
    keys_.clear();
    Start();
    const uint64_t round = Admit(4);
    for (int i = 0; i < 4; ++i) {
      if (kill && i == 2) Kill();
      ASSERT_TRUE(update(i, round).ok()) << Device(i);
    }
    auto result = Await(Device(0), round, v1::PHASE_RESULT);
    ASSERT_TRUE(result.ok() && result->has_result()) << (result.ok() ? result->DebugString() : "");
    EXPECT_EQ(result->result().survivors(), 4u);
    heads.push_back(engine_->latest_head());
    engine_.reset();
  }
  EXPECT_EQ(heads[0].SerializeAsString(), heads[1].SerializeAsString());
}

TEST_F(RoundEngineResumeTest, ARoundWhoseTaskTheNewConfigurationChangesIsAbortedAndTheNextRuns) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  Advertise(round, Device(0), members[Device(0)]);
  config_.dp.bits = 18;
  Kill();
  auto aborted = Await(Device(0), round, v1::PHASE_SHARE_KEYS);
  ASSERT_TRUE(aborted.ok()) << aborted.status();
  EXPECT_TRUE(aborted->has_aborted()) << aborted->DebugString();
  ASSERT_EQ(Rounds().size(), 1u);
  EXPECT_EQ(Rounds()[0].state, "aborted");
  EXPECT_NE(Rounds()[0].reason.find("plans another task"), std::string::npos) << Rounds()[0].reason;
  const v1::CheckInResponse next = CheckIn(Device(0));
  ASSERT_TRUE(next.has_admitted());
  EXPECT_EQ(next.admitted().round_id(), round + 1);
  EXPECT_TRUE(Charges().empty());
}

TEST_F(RoundEngineResumeTest, ADamagedJournalAbortsTheRoundAndNothingElse) {
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (auto& [device, m] : members) Advertise(round, device, m);
  engine_.reset();
  {
    SQLite::Database journal((config_.state_dir / "round_journal.db").string(), SQLite::OPEN_READWRITE);
    journal.exec("UPDATE events SET entry = x'ff' WHERE seq = (SELECT MAX(seq) FROM events)");
  }
  Kill();
  ASSERT_EQ(Rounds().size(), 1u);
  EXPECT_EQ(Rounds()[0].state, "aborted");
  EXPECT_NE(Rounds()[0].reason.find("damaged"), std::string::npos) << Rounds()[0].reason;
  EXPECT_EQ(engine_->latest_model().version(), 1u);
}

}  // namespace
}  // namespace tinyfed::aggregator
