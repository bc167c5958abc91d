// Publishing under faults: the disk fills up (every SQLite write from the
// k-th on fails) or the process runs out of file descriptors, at every
// step of publishing a round (charging the ledger, writing the model file,
// recording the round). Whatever fails, a charge exists if and only if its
// model is published, at once and again after a restart, and the next round
// publishes once the fault is gone.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "aggregator/testing/test_federation.h"
#include "base/testing/fake_env.h"
#include "gtest/gtest.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/dp/ledger.h"

namespace tinyfed::aggregator {
namespace {

// A SQLite VFS over the default one whose writes, syncs and truncations fail
// with SQLITE_FULL from the armed operation on, as on a full disk.
class DiskFullVfs {
 public:
  static DiskFullVfs& Get() {
    static DiskFullVfs vfs;
    return vfs;
  }
  // Operations from now on: the first `ok_before` succeed, then all fail.
  void Arm(int ok_before) {
    remaining_ = ok_before;
    armed_ = true;
  }
  void Disarm() { armed_ = false; }
  bool failed_any() const { return failed_ > 0; }
  void ResetCount() { failed_ = 0; }

 private:
  struct File {
    sqlite3_file base;
    sqlite3_file* real;
  };

  DiskFullVfs() {
    real_ = sqlite3_vfs_find(nullptr);
    vfs_ = *real_;
    vfs_.zName = "tinyfed-disk-full";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    vfs_.xOpen = &Open;
    methods_ = {};
    sqlite3_vfs_register(&vfs_, /*makeDflt=*/1);
  }
  bool Fail() {
    if (!armed_) return false;
    if (remaining_ > 0) {
      --remaining_;
      return false;
    }
    ++failed_;
    return true;
  }
  static File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }

  static int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
    DiskFullVfs& self = Get();
    File* f = Of(file);
    f->real = reinterpret_cast<sqlite3_file*>(f + 1);
    const int rc = self.real_->xOpen(self.real_, name, f->real, flags, out_flags);
    if (f->real->pMethods == nullptr) {
      file->pMethods = nullptr;
      return rc;
    }
    if (self.methods_.iVersion == 0) self.InitMethods(f->real->pMethods);
    file->pMethods = &self.methods_;
    return rc;
  }
  void InitMethods(const sqlite3_io_methods* real) {
    methods_ = *real;
    methods_.xClose = [](sqlite3_file* f) { return Of(f)->real->pMethods->xClose(Of(f)->real); };
    methods_.xRead = [](sqlite3_file* f, void* p, int n, sqlite3_int64 o) {
      return Of(f)->real->pMethods->xRead(Of(f)->real, p, n, o);
    };
    methods_.xWrite = [](sqlite3_file* f, const void* p, int n, sqlite3_int64 o) {
      return Get().Fail() ? SQLITE_FULL : Of(f)->real->pMethods->xWrite(Of(f)->real, p, n, o);
    };
    methods_.xTruncate = [](sqlite3_file* f, sqlite3_int64 size) {
      return Get().Fail() ? SQLITE_FULL : Of(f)->real->pMethods->xTruncate(Of(f)->real, size);
    };
    methods_.xSync = [](sqlite3_file* f, int flags) {
      return Get().Fail() ? SQLITE_IOERR_FSYNC : Of(f)->real->pMethods->xSync(Of(f)->real, flags);
    };
    methods_.xFileSize = [](sqlite3_file* f, sqlite3_int64* size) {
      return Of(f)->real->pMethods->xFileSize(Of(f)->real, size);
    };
    methods_.xLock = [](sqlite3_file* f, int l) { return Of(f)->real->pMethods->xLock(Of(f)->real, l); };
    methods_.xUnlock = [](sqlite3_file* f, int l) { return Of(f)->real->pMethods->xUnlock(Of(f)->real, l); };
    methods_.xCheckReservedLock = [](sqlite3_file* f, int* out) {
      return Of(f)->real->pMethods->xCheckReservedLock(Of(f)->real, out);
    };
    methods_.xFileControl = [](sqlite3_file* f, int op, void* arg) {
      return Of(f)->real->pMethods->xFileControl(Of(f)->real, op, arg);
    };
    methods_.xSectorSize = [](sqlite3_file* f) { return Of(f)->real->pMethods->xSectorSize(Of(f)->real); };
    methods_.xDeviceCharacteristics = [](sqlite3_file* f) {
      return Of(f)->real->pMethods->xDeviceCharacteristics(Of(f)->real);
    };
    methods_.xShmMap = [](sqlite3_file* f, int page, int size, int extend, void volatile** out) {
      return Of(f)->real->pMethods->xShmMap(Of(f)->real, page, size, extend, out);
    };
    methods_.xShmLock = [](sqlite3_file* f, int offset, int n, int flags) {
      return Of(f)->real->pMethods->xShmLock(Of(f)->real, offset, n, flags);
    };
    methods_.xShmBarrier = [](sqlite3_file* f) { Of(f)->real->pMethods->xShmBarrier(Of(f)->real); };
    methods_.xShmUnmap = [](sqlite3_file* f, int del) { return Of(f)->real->pMethods->xShmUnmap(Of(f)->real, del); };
    methods_.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int n, void** out) {
      return Of(f)->real->pMethods->xFetch(Of(f)->real, o, n, out);
    };
    methods_.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) {
      return Of(f)->real->pMethods->xUnfetch(Of(f)->real, o, p);
    };
  }

  sqlite3_vfs* real_ = nullptr;
  sqlite3_vfs vfs_{};
  sqlite3_io_methods methods_{};
  std::atomic<bool> armed_{false};
  std::atomic<int> remaining_{0};
  std::atomic<int> failed_{0};
};

// Holds every free file descriptor but `spare` while it lives.
class DescriptorHog {
 public:
  explicit DescriptorHog(int spare) {
    for (;;) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      fds_.push_back(fd);
    }
    for (int i = 0; i < spare && !fds_.empty(); ++i) {
      ::close(fds_.back());
      fds_.pop_back();
    }
  }
  ~DescriptorHog() {
    for (int fd : fds_) ::close(fd);
  }

 private:
  std::vector<int> fds_;
};

constexpr int kCohort = 3;

class PublishFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DiskFullVfs::Get();
    dir_ = std::filesystem::path(::testing::TempDir()) / ("tinyfed-publish-fault-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto federation = testing::WriteTestFederation(dir_, "publish-fault-test");
    ASSERT_TRUE(federation.ok()) << federation.status();
    config_ = federation->config;
    config_.cohort_size = kCohort;
    config_.min_cohort = kCohort;
    config_.secure_aggregation = false;
    config_.dp.mode = DpMode::kCentral;
    config_.dp.noise_multiplier = 5.0;
    config_.dp.epsilon_budget = 1000.0;
    Restart();
  }
  void TearDown() override {
    DiskFullVfs::Get().Disarm();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Restart() {
    engine_.reset();
    auto engine = RoundEngine::Create(config_, env_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  static v1::RequestHeader Header(int device, uint64_t round, v1::Phase phase) {
    v1::RequestHeader h;
    h.set_device_id("clinic-" + std::to_string(device));
    h.set_round_id(round);
    h.set_phase(phase);
    return h;
  }

  // Runs one round to its last update; the fault is armed while that update
  // (which publishes) is handled. Returns how the round ended.
  v1::AwaitResponse RunRound(const std::function<void()>& arm, const std::function<void()>& disarm) {
    uint64_t round = 0;
    for (int d = 0; d < kCohort; ++d) {
      v1::CheckInRequest checkin;
      *checkin.mutable_header() = Header(d, 0, v1::PHASE_CHECK_IN);
      auto admitted = engine_->CheckIn(checkin);
      EXPECT_TRUE(admitted.ok() && admitted->has_admitted()) << admitted.status();
      if (!admitted.ok() || !admitted->has_admitted()) return {};
      round = admitted->admitted().round_id();
    }
    for (int d = 0; d < kCohort; ++d) {
      v1::AwaitRequest await;
      *await.mutable_header() = Header(d, round, v1::PHASE_TASK);
      auto task = engine_->Await(await);
      EXPECT_TRUE(task.ok() && task->has_task()) << task.status();
      v1::SubmitRequest submit;
      *submit.mutable_header() = Header(d, round, v1::PHASE_UPDATE);
      v1::PlainUpdate* u = submit.mutable_update();
      u->set_round_id(round);
      const v1::Head head = engine_->latest_head();
      const size_t dim = static_cast<size_t>(head.weights_size() + head.bias_size());
      u->set_dimension(static_cast<uint32_t>(dim));
      std::vector<float> delta(dim, 0.01f * static_cast<float>(d + 1));
      u->mutable_dense()->set_values(std::string(reinterpret_cast<const char*>(delta.data()), dim * sizeof(float)));
      if (d == kCohort - 1) arm();
      auto sent = engine_->Submit(submit);
      if (d == kCohort - 1) disarm();
      // A message the round journal cannot hold aborts the round, and the
      // device hears UNAVAILABLE: it sends the message again (a restarted
      // aggregator may resume the round from its journal and take it).
      const bool unjournaled = d == kCohort - 1 && absl::IsUnavailable(sent.status()) &&
                               absl::StrContains(sent.status().message(), "round journal");
      EXPECT_TRUE(sent.ok() || unjournaled) << sent.status();
      last_update_ = submit;
    }
    auto outcome = engine_->Outcome(static_cast<int64_t>(round));
    EXPECT_TRUE(outcome.has_value()) << "round " << round << " did not end";
    return outcome.value_or(v1::AwaitResponse());
  }

  // Rounds charged == rounds published, and the ledger's epsilon is the one
  // the latest round recorded.
  void ExpectChargesMatchPublishedModels(const std::string& when) {
    auto state = AggregatorState::Open(config_.state_dir);
    ASSERT_TRUE(state.ok()) << state.status();
    auto models = (*state)->Models();
    ASSERT_TRUE(models.ok()) << models.status();
    std::set<int64_t> published;
    for (const PublishedModel& m : *models) {
      if (m.round_id > 0) published.insert(m.round_id);
    }
    auto ledger = dp::PrivacyLedger::Open(config_.state_dir / "ledger.db",
                                          {.epsilon = config_.dp.epsilon_budget, .delta = config_.dp.delta});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    auto charges = (*ledger)->Charges();
    ASSERT_TRUE(charges.ok()) << charges.status();
    std::set<int64_t> charged;
    for (const dp::PrivacyCharge& c : *charges) charged.insert(c.round);
    EXPECT_EQ(charged, published) << when;
    auto rounds = (*state)->Rounds();
    ASSERT_TRUE(rounds.ok()) << rounds.status();
    double recorded = 0.0;
    for (const RoundRecord& r : *rounds) {
      if (r.state == "done") recorded = r.epsilon;
    }
    EXPECT_NEAR((*ledger)->Spent()->epsilon, recorded, 1e-9) << when;
  }

  std::filesystem::path dir_;
  Config config_;
  base::testing::FakeEnv env_;
  std::unique_ptr<RoundEngine> engine_;
  v1::SubmitRequest last_update_;  // the last update RunRound sent
};

std::string StepOf(const v1::AwaitResponse& outcome) {
  if (outcome.has_result()) return "published";
  const std::string& reason = outcome.aborted().reason();
  return reason.substr(0, reason.find(':'));
}

TEST_F(PublishFaultTest, ADiskFullAtAnyWriteOfPublishingChargesNothing) {
  std::set<std::string> steps;
  int published = 0;
  // k successful SQLite writes, then the disk is full for the rest of the
  // update's handling (and the engine's attempt to void the charge).
  for (int k = 0;; ++k) {
    DiskFullVfs::Get().ResetCount();
    const v1::AwaitResponse outcome = RunRound([k] { DiskFullVfs::Get().Arm(k); }, [] { DiskFullVfs::Get().Disarm(); });
    const std::string step = StepOf(outcome);
    steps.insert(step);
    if (step == "published") {
      ++published;
      ExpectChargesMatchPublishedModels("after the round with " + std::to_string(k) + " good writes");
      break;
    }
    EXPECT_TRUE(DiskFullVfs::Get().failed_any());
    // The next round settles what the full disk kept from voiding, and publishes.
    ASSERT_EQ(StepOf(RunRound([] {}, [] {})), "published") << "after " << k << " good writes";
    ++published;
    ExpectChargesMatchPublishedModels("after the fault at write " + std::to_string(k) + " and a good round");
    ASSERT_LT(k, 200) << "publishing never succeeded";
  }
  // Faults hit the ledger and the state (the model file is not SQLite's).
  EXPECT_TRUE(steps.contains("privacy ledger")) << ::testing::PrintToString(steps);
  EXPECT_TRUE(steps.contains("publishing")) << ::testing::PrintToString(steps);
  EXPECT_EQ(engine_->latest_model().version(), static_cast<uint64_t>(published + 1));
}

// The process dies between charging and recording the round: the disk stays
// full after the charge, so voiding fails too; the next start voids it.
TEST_F(PublishFaultTest, ADeathBetweenChargeAndPublishIsSettledAtTheNextStart) {
  bool charged_unpublished = false;
  for (int k = 1; k < 200 && !charged_unpublished; ++k) {
    const uint64_t before = engine_->latest_model().version();
    const v1::AwaitResponse outcome = RunRound([k] { DiskFullVfs::Get().Arm(k); }, [] {});
    // Still armed: the engine dies here with the disk full.
    engine_.reset();
    DiskFullVfs::Get().Disarm();
    auto ledger = dp::PrivacyLedger::Open(config_.state_dir / "ledger.db",
                                          {.epsilon = config_.dp.epsilon_budget, .delta = config_.dp.delta});
    ASSERT_TRUE(ledger.ok());
    const auto charges = (*ledger)->Charges();
    charged_unpublished = !outcome.has_result() && !charges->empty() &&
                          charges->back().round == static_cast<int64_t>(outcome.aborted().round_id());
    ledger->reset();
    Restart();
    ExpectChargesMatchPublishedModels("after a death at write " + std::to_string(k));
    // The round the dead process could not record as aborted resumes from
    // its journal (or the replay ends it): the last device, which never
    // heard its update acknowledged, sends it again, and the round publishes.
    const int64_t round = static_cast<int64_t>(last_update_.header().round_id());
    if (!engine_->Outcome(round).has_value()) {
      ASSERT_TRUE(engine_->Submit(last_update_).ok()) << "round " << round << " after a death at write " << k;
    }
    const bool published_now = !outcome.has_result() && engine_->Outcome(round).has_value();
    if (published_now) {
      EXPECT_TRUE(engine_->Outcome(round)->has_result()) << engine_->Outcome(round)->DebugString();
    }
    ExpectChargesMatchPublishedModels("after the death at write " + std::to_string(k) + " and the resumed round");
    EXPECT_EQ(engine_->latest_model().version(), before + (outcome.has_result() || published_now ? 1 : 0));
  }
  EXPECT_TRUE(charged_unpublished) << "no fault left a charge without its model";
  ASSERT_EQ(StepOf(RunRound([] {}, [] {})), "published");
  ExpectChargesMatchPublishedModels("after a good round");
}

TEST_F(PublishFaultTest, RunningOutOfDescriptorsChargesNothing) {
  std::set<std::string> steps;
  for (int spare = 0; spare <= 8; ++spare) {
    std::unique_ptr<DescriptorHog> hog;
    const v1::AwaitResponse outcome =
        RunRound([&] { hog = std::make_unique<DescriptorHog>(spare); }, [&] { hog.reset(); });
    steps.insert(StepOf(outcome));
    ExpectChargesMatchPublishedModels("with " + std::to_string(spare) + " spare descriptors");
  }
  EXPECT_TRUE(steps.contains("publishing")) << ::testing::PrintToString(steps);
  EXPECT_TRUE(steps.contains("published")) << ::testing::PrintToString(steps);
  ASSERT_EQ(StepOf(RunRound([] {}, [] {})), "published");
  ExpectChargesMatchPublishedModels("after a good round");
}

}  // namespace
}  // namespace tinyfed::aggregator
