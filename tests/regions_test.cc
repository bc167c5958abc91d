// Regions compose into a national federation, in one process: a national
// round engine, three regional engines each joined to it by a RegionLink,
// and three real gateways per region calling their region. The national
// secure sum must be exactly the sum of every surviving clinic's encoded
// update (mod 2^bits), although no aggregator but the national one sees
// more than one region's sum; gateways install the national model, which
// their region relays but cannot forge; a region killed mid-round is a
// dropout of the national round.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "aggregator/testing/round_engine_peer.h"
#include "aggregator/testing/test_federation.h"
#include "client/testing/client_peer.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/aggregator/in_process_transport.h"
#include "tinyfed/aggregator/region_link.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/client/client.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trust.h"

namespace tinyfed {
namespace {

using absl::StrCat;

constexpr int kRegions = 3;
constexpr int kClinicsPerRegion = 3;
constexpr int kBits = 20;

std::string Clinic(int region, int c) { return StrCat("clinic-", region + 1, "-", c + 1); }

class RegionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           StrCat("regions_", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto federation = aggregator::testing::WriteTestFederation(dir_, "national");
    ASSERT_TRUE(federation.ok()) << federation.status();
    pinned_root_ = federation->pinned_root;
    national_config_ = federation->config;
    national_config_.cohort_size = kRegions;
    national_config_.min_cohort = 2;
    national_config_.national_clinics = kRegions * kClinicsPerRegion;
    national_config_.max_rounds = 2;
    national_config_.dp.bits = kBits;
    national_config_.dp.noise_multiplier = 0.5;
    national_config_.dp.epsilon_budget = 1e6;
    national_config_.training.set_epochs(1);
    national_config_.poll_interval = absl::Milliseconds(10);
    national_config_.selection_timeout = absl::Seconds(5);
    national_config_.training_timeout = absl::Seconds(60);
    national_config_.share_keys_timeout = national_config_.masked_input_timeout = national_config_.unmasking_timeout =
        absl::Seconds(2);
    national_config_.simulation_seed = 5;
  }
  void TearDown() override {
    gateways_.clear();
    stopping_ = true;
    for (auto& link : links_) link->Stop();
    for (auto& t : threads_) t.join();
    links_.clear();
    regions_.clear();
    national_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // The national engine, the regions with their links (region `killed`
  // stops before its masked input of national round `kill_round`), and
  // the gateways, each observed.
  void Start(int killed = -1, uint64_t kill_round = 0) {
    auto national = aggregator::RoundEngine::Create(national_config_);
    ASSERT_TRUE(national.ok()) << national.status();
    national_ = std::move(*national);
    aggregator::testing::RoundEnginePeer::ObserveSecureSums(
        *national_, [this](int64_t round, std::span<const uint32_t> sum, const std::vector<std::string>& survivors) {
          std::lock_guard lock(mu_);
          national_sums_[round].assign(sum.begin(), sum.end());
          national_survivors_[round] = survivors;
        });
    for (int r = 0; r < kRegions; ++r) {
      const std::string id = StrCat("region-", r + 1);
      aggregator::Config rc = national_config_;
      rc.upstream.emplace();
      rc.upstream->address = "in-process";
      rc.upstream->device_id = id;
      rc.national_clinics = 0;
      rc.max_rounds = 0;
      rc.state_dir = dir_ / id;
      if (!regional_roots_.empty()) rc.roots_dir = regional_roots_;
      rc.initial_model.clear();
      rc.publishing_key.clear();
      rc.cohort_size = kClinicsPerRegion;
      rc.min_cohort = 2;
      rc.max_dropout = 0.4;
      rc.training_timeout = absl::Seconds(20);
      auto region = aggregator::RoundEngine::Create(rc);
      ASSERT_TRUE(region.ok()) << region.status();
      aggregator::RegionLinkOptions options;
      options.device_id = id;
      options.dir = rc.state_dir / "upstream";
      auto token = national_->devices()->IssueToken(id, absl::Hours(1));
      ASSERT_TRUE(token.ok());
      options.enrollment_token = *token;
      options.poll_interval = absl::Milliseconds(10);
      if (r == killed) {
        options.on_phase = [kill_round](uint64_t round, v1::Phase phase) {
          return !(round == kill_round && phase == v1::PHASE_MASKED_INPUT);
        };
      }
      auto link = aggregator::RegionLink::Create(
          **region, std::make_unique<aggregator::InProcessTransport>(national_.get()), options);
      ASSERT_TRUE(link.ok()) << link.status();
      regions_.push_back(std::move(*region));
      links_.push_back(std::move(*link));
    }
    for (int r = 0; r < kRegions; ++r) {
      for (int c = 0; c < kClinicsPerRegion; ++c) StartGateway(r, c);
    }
    for (auto& link : links_) threads_.emplace_back([l = link.get()] { l->Run(); });
    threads_.emplace_back([this] {
      while (!stopping_) {
        national_->Tick();
        for (auto& region : regions_) region->Tick();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }

  void StartGateway(int r, int c) {
    client::ClientConfig cc;
    cc.device_id = Clinic(r, c);
    cc.data_dir = dir_ / cc.device_id;
    cc.trusted_root = pinned_root_;  // the national root: regions relay, they do not sign
    cc.holdout_fraction = 0.0;
    auto token = regions_[static_cast<size_t>(r)]->devices()->IssueToken(cc.device_id, absl::Hours(1));
    ASSERT_TRUE(token.ok());
    cc.enrollment_token = *token;
    auto gateway = client::Client::Create(
        cc, std::make_unique<aggregator::InProcessTransport>(regions_[static_cast<size_t>(r)].get()));
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    client::testing::ClientPeer::ObserveEncodedUpdates(
        **gateway, [this, id = cc.device_id](uint64_t, std::span<const uint32_t> e) {
          std::lock_guard lock(mu_);
          encoded_[id].assign(e.begin(), e.end());
        });
    ASSERT_TRUE((*gateway)
                    ->AddSamples(client::ToSamples(
                        models::testing::TinyClassifierData(40, static_cast<uint64_t>(10 * r + c + 1))))
                    .ok());
    gateways_.emplace(cc.device_id, std::move(*gateway));
  }

  // Every gateway's part in one round, each on a thread; their reports.
  std::map<std::string, client::RoundReport> RunRound() {
    {
      std::lock_guard lock(mu_);
      encoded_.clear();
    }
    std::map<std::string, client::RoundReport> reports;
    std::mutex reports_mu;
    std::vector<std::thread> running;
    for (auto& [id, gateway] : gateways_) {
      running.emplace_back([&, id = id, g = gateway.get()] {
        client::RoundReport report;
        for (int attempt = 0; attempt < 6000; ++attempt) {  // the regions wait for the national round
          auto r = g->ParticipateOnce();
          ASSERT_TRUE(r.ok()) << id << ": " << r.status();
          report = *r;
          if (report.outcome != client::RoundOutcome::kNotSelected) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        std::lock_guard lock(reports_mu);
        reports[id] = report;
      });
    }
    for (auto& t : running) t.join();
    return reports;
  }

  // The national sum of round `round` is exactly the clinics' of `regions`.
  void ExpectNationalSumOf(int64_t round, const std::vector<int>& regions) {
    std::lock_guard lock(mu_);
    ASSERT_TRUE(national_sums_.contains(round)) << "no secure sum for national round " << round;
    const std::vector<uint32_t>& sum = national_sums_[round];
    std::vector<uint32_t> expected(sum.size(), 0);
    int clinics = 0;
    for (int r : regions) {
      for (int c = 0; c < kClinicsPerRegion; ++c) {
        const auto e = encoded_.find(Clinic(r, c));
        ASSERT_NE(e, encoded_.end()) << Clinic(r, c) << " encoded nothing";
        ASSERT_EQ(e->second.size(), sum.size());
        for (size_t i = 0; i < sum.size(); ++i) expected[i] = (expected[i] + e->second[i]) & ((1u << kBits) - 1);
        ++clinics;
      }
    }
    EXPECT_EQ(sum, expected) << "national round " << round;
    EXPECT_EQ(national_survivors_[round].size(), regions.size());
    auto outcome = national_->Outcome(round);
    ASSERT_TRUE(outcome && outcome->has_result());
    EXPECT_EQ(outcome->result().survivors(), static_cast<uint32_t>(clinics));
  }

  std::filesystem::path dir_, pinned_root_;
  std::filesystem::path regional_roots_;  // set: the regions start with these roots, not the national ones
  aggregator::Config national_config_;
  std::unique_ptr<aggregator::RoundEngine> national_;
  std::vector<std::unique_ptr<aggregator::RoundEngine>> regions_;
  std::vector<std::unique_ptr<aggregator::RegionLink>> links_;
  std::map<std::string, std::unique_ptr<client::Client>> gateways_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_ = false;
  std::mutex mu_;
  std::map<int64_t, std::vector<uint32_t>> national_sums_;
  std::map<int64_t, std::vector<std::string>> national_survivors_;
  std::map<std::string, std::vector<uint32_t>> encoded_;
};

TEST_F(RegionsTest, TheNationalSumIsEveryClinicsAndGatewaysInstallTheNationalModel) {
  Start();
  for (int64_t round = 1; round <= 2; ++round) {
    const auto reports = RunRound();
    for (const auto& [id, report] : reports) {
      EXPECT_EQ(report.outcome, client::RoundOutcome::kCompleted) << id << ": " << report.detail;
      EXPECT_EQ(report.model_version, static_cast<uint64_t>(round + 1)) << id;
    }
    ExpectNationalSumOf(round, {0, 1, 2});
  }
  // Every region mirrored the national models, byte for byte, and recorded
  // its rounds as done; the federation closed everywhere after max_rounds.
  EXPECT_TRUE(national_->closed());
  for (auto& region : regions_) {
    EXPECT_EQ(region->latest_model().download_sha256(), national_->latest_model().download_sha256());
    // The link's next check-in hears that the national federation closed.
    for (int i = 0; i < 500 && !region->closed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(region->closed());
  }
  auto state = aggregator::AggregatorState::Open(dir_ / "region-2");
  ASSERT_TRUE(state.ok()) << state.status();
  auto rounds = (*state)->Rounds();
  ASSERT_TRUE(rounds.ok());
  ASSERT_EQ(rounds->size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ((*rounds)[i].state, "done") << (*rounds)[i].reason;
    EXPECT_EQ((*rounds)[i].survivors, kClinicsPerRegion);
    EXPECT_EQ((*rounds)[i].model_version, static_cast<uint64_t>(i + 2));
  }
}

TEST_F(RegionsTest, ARegionKilledMidRoundIsADropout) {
  Start(/*killed=*/1, /*kill_round=*/2);
  const auto first = RunRound();
  ExpectNationalSumOf(1, {0, 1, 2});
  const auto second = RunRound();
  // Region 2 stopped before its masked input: the national round went on
  // with the other two, whose clinics alone are in the sum.
  ExpectNationalSumOf(2, {0, 2});
  for (const auto& [id, report] : second) {
    const bool in_killed_region = id.starts_with("clinic-2-");
    EXPECT_EQ(report.outcome, in_killed_region ? client::RoundOutcome::kAborted : client::RoundOutcome::kCompleted)
        << id << ": " << report.detail;
  }
  EXPECT_EQ(national_->latest_model().version(), 3u);
}

TEST_F(RegionsTest, ARootRotationReachesGatewaysThroughTheirRegion) {
  // The regions and gateways were installed with root v1; the national
  // aggregator has since rotated to v2 (signed by v1's root key).
  regional_roots_ = dir_ / "region-roots";
  std::filesystem::create_directories(regional_roots_);
  std::filesystem::copy_file(pinned_root_, models::RootFile(regional_roots_, 1));
  auto chain = models::ReadRootChain(national_config_.roots_dir);
  ASSERT_TRUE(chain.ok());
  auto v1_root = models::ParseRoot(chain->front());
  ASSERT_TRUE(v1_root.ok());
  v1::RootMetadata v2 = *v1_root;
  v2.set_version(2);
  auto root_key = models::ReadSigningKey(dir_ / "trust" / "root.key");
  ASSERT_TRUE(root_key.ok()) << root_key.status();
  const models::SigningKey* signer = &*root_key;
  ASSERT_TRUE(models::WriteRoot(national_config_.roots_dir, models::SignRoot(v2, {&signer, 1})).ok());
  Start();
  for (const auto& [id, report] : RunRound()) {
    EXPECT_EQ(report.outcome, client::RoundOutcome::kCompleted) << id << ": " << report.detail;
  }
  for (int r = 0; r < kRegions; ++r) {
    EXPECT_TRUE(std::filesystem::exists(models::RootFile(dir_ / StrCat("region-", r + 1) / "roots", 2))) << r;
  }
  EXPECT_TRUE(std::filesystem::exists(models::RootFile(dir_ / Clinic(0, 0) / "roots", 2)));
}

TEST_F(RegionsTest, ARegionCannotForgeAModel) {
  Start();
  // A bundle signed under another federation's root: the mirror refuses it
  // and keeps serving the national model.
  auto other = models::CreateSingleKeyRepository(dir_ / "other-trust", "national");
  ASSERT_TRUE(other.ok());
  auto key = models::ReadSigningKey(other->publishing_key);
  ASSERT_TRUE(key.ok());
  v1::ModelBundle bundle = models::testing::TinyClassifier();
  bundle.mutable_metadata()->set_version(9);
  const std::string file = models::EncodeBundleFile(bundle);
  auto release = models::DescribeRelease(file, "national");
  ASSERT_TRUE(release.ok());
  release->set_version(9);
  release->set_expires_unix_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
  v1::SignedBundle forged;
  forged.set_bundle(file);
  const models::SigningKey* k = &*key;
  *forged.mutable_release() = models::SignRelease(*release, {&k, 1});
  for (int i = 0; i < 200 && regions_[0]->latest_model().version() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const v1::ModelRef before = regions_[0]->latest_model();
  const absl::Status mirrored = regions_[0]->MirrorModel(forged.SerializeAsString());
  EXPECT_EQ(mirrored.code(), absl::StatusCode::kPermissionDenied) << mirrored;
  EXPECT_EQ(regions_[0]->latest_model().download_sha256(), before.download_sha256());
}

}  // namespace
}  // namespace tinyfed
