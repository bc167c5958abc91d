// A backup taken while a round runs, restored into a fresh state directory:
// every model published by then is there, byte for byte, the privacy
// ledger is the one the aggregator had, and an aggregator started on it
// goes on publishing. Damaged or foreign backups are refused whole.
#include "tinyfed/aggregator/backup.h"

#include <gtest/gtest.h>

#include "SQLiteCpp/SQLiteCpp.h"
#include "aggregator/testing/round_engine_fixture.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/dp/ledger.h"

namespace tinyfed::aggregator {
namespace {

using base::testing::ValueOrDie;

class BackupTest : public testing::RoundEngineFixture {
 protected:
  // Round `round` of four members through every phase but the last
  // `phases_left` (0: to its end and publication).
  void RunRound(uint64_t round, int phases_left = 0) {
    members_ = Members(round, 4);
    for (auto& [device, m] : members_) Advertise(round, device, m);
    const v1::Phase phases[] = {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING};
    for (int p = 0; p < 3 - phases_left; ++p) {
      for (auto& [device, m] : members_) Answer(round, device, m, phases[p]);
    }
  }
  std::vector<dp::PrivacyCharge> Charges(const std::filesystem::path& state_dir) {
    auto ledger = ValueOrDie(dp::PrivacyLedger::Open(state_dir / "ledger.db", {.epsilon = 1e6, .delta = 1e-5}), "");
    return ValueOrDie(ledger->Charges(), "the charges");
  }
  std::vector<PublishedModel> Models(const std::filesystem::path& state_dir) {
    auto state = ValueOrDie(AggregatorState::Open(state_dir), "the state");
    return ValueOrDie(state->Models(), "the models");
  }

  std::map<std::string, Member> members_;
};

TEST_F(BackupTest, ABackupDuringARoundRestoresEveryModelAndTheLedgerAndTheFederationGoesOn) {
  Start();
  RunRound(Admit(4));
  ASSERT_EQ(engine_->latest_model().version(), 2u);
  // Round 2 is between its masked inputs and its unmasking when the backup runs.
  const uint64_t second = Admit(4);
  RunRound(second, /*phases_left=*/1);
  const std::vector<dp::PrivacyCharge> charged = Charges(config_.state_dir);
  const std::vector<PublishedModel> published = Models(config_.state_dir);
  const std::filesystem::path backup = dir_ / "state.backup";
  const BackupSummary taken = ValueOrDie(BackupState(config_.state_dir, backup), "the backup");
  EXPECT_EQ(taken.latest_model_version, 2u);
  EXPECT_EQ(taken.rounds, 2);  // one done, one running
  EXPECT_EQ(taken.files, 5);   // three databases, two models
  // The live federation finishes round 2 after the backup.
  for (auto& [device, m] : members_) Answer(second, device, m, v1::PHASE_UNMASKING);
  ASSERT_EQ(engine_->latest_model().version(), 3u);
  engine_.reset();

  const std::filesystem::path restored = dir_ / "restored";
  const BackupSummary back = ValueOrDie(RestoreState(backup, restored), "the restore");
  EXPECT_EQ(back.latest_model_version, 2u);
  // The ledger is the one the aggregator had at the backup, charge for charge.
  const std::vector<dp::PrivacyCharge> restored_charges = Charges(restored);
  ASSERT_EQ(restored_charges.size(), charged.size());
  for (size_t i = 0; i < charged.size(); ++i) {
    EXPECT_EQ(restored_charges[i].round, charged[i].round);
    EXPECT_EQ(restored_charges[i].mechanism, charged[i].mechanism);
    EXPECT_EQ(restored_charges[i].parameters, charged[i].parameters);
    EXPECT_EQ(restored_charges[i].rdp, charged[i].rdp);
  }
  // Every model published by then, readable and identical to the original file.
  const std::vector<PublishedModel> models = Models(restored);
  ASSERT_EQ(models.size(), published.size());
  for (size_t i = 0; i < models.size(); ++i) {
    EXPECT_EQ(models[i].version, published[i].version);
    EXPECT_EQ(models[i].bundle_sha256, published[i].bundle_sha256);
    EXPECT_EQ(models[i].file.parent_path(), std::filesystem::absolute(restored) / "models");
    EXPECT_EQ(ValueOrDie(base::ReadFileBytes(models[i].file, 1 << 30), "restored model"),
              ValueOrDie(base::ReadFileBytes(published[i].file, 1 << 30), "original model"));
    EXPECT_TRUE(ReadPublishedBundle(models[i]).ok());
  }

  // An aggregator on the restored directory: the round that was running is
  // aborted as after any restart, and the next one publishes v3.
  config_.state_dir = restored;
  auto engine = RoundEngine::Create(config_, env_);
  ASSERT_TRUE(engine.ok()) << engine.status();
  engine_ = std::move(*engine);
  EXPECT_EQ(engine_->latest_model().version(), 2u);
  RunRound(Admit(4));
  EXPECT_EQ(engine_->latest_model().version(), 3u);
  EXPECT_EQ(Charges(restored).size(), charged.size() + 1);
  const auto rounds = Rounds();
  ASSERT_EQ(rounds.size(), 3u);
  EXPECT_EQ(rounds[1].state, "aborted");
  EXPECT_EQ(rounds[2].state, "done");
}

TEST_F(BackupTest, ABackupNeverOverwritesAndARestoreNeedsAnEmptyDirectory) {
  Start();
  const std::filesystem::path backup = dir_ / "state.backup";
  ASSERT_TRUE(BackupState(config_.state_dir, backup).ok());
  const auto again = BackupState(config_.state_dir, backup);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
  EXPECT_EQ(BackupState(dir_ / "nothing", dir_ / "other.backup").status().code(),
            absl::StatusCode::kFailedPrecondition);
  const auto onto = RestoreState(backup, config_.state_dir);
  EXPECT_EQ(onto.status().code(), absl::StatusCode::kFailedPrecondition) << onto.status();
  EXPECT_NE(onto.status().message().find("not empty"), std::string::npos);
}

TEST_F(BackupTest, ADamagedOrForeignBackupIsRefusedAndLeavesNothing) {
  Start();
  const std::filesystem::path backup = dir_ / "state.backup";
  ASSERT_TRUE(BackupState(config_.state_dir, backup).ok());
  {
    SQLite::Database archive(backup.string(), SQLite::OPEN_READWRITE);
    archive.exec("UPDATE files SET content = zeroblob(length(content)) WHERE name = 'ledger.db'");
  }
  const std::filesystem::path restored = dir_ / "restored";
  const auto damaged = RestoreState(backup, restored);
  EXPECT_EQ(damaged.status().code(), absl::StatusCode::kDataLoss) << damaged.status();
  EXPECT_NE(damaged.status().message().find("ledger.db does not match its SHA-256"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(restored));

  {
    SQLite::Database archive(backup.string(), SQLite::OPEN_READWRITE);
    archive.exec("INSERT INTO files VALUES ('../../etc/evil', x'00', x'00')");
  }
  const auto escaping = RestoreState(backup, restored);
  EXPECT_EQ(escaping.status().code(), absl::StatusCode::kDataLoss) << escaping.status();
  EXPECT_FALSE(std::filesystem::exists(restored));

  ASSERT_TRUE(base::WriteFileAtomically(dir_ / "not-a-backup", "hello").ok());
  EXPECT_FALSE(RestoreState(dir_ / "not-a-backup", restored).ok());
  EXPECT_FALSE(std::filesystem::exists(restored));
}

}  // namespace
}  // namespace tinyfed::aggregator
