// A national round (rounds.national_clinics): the participants are regional
// aggregators, each holding the secure sum of its own clinics' encoded
// updates, encoded with the national round's parameters and still mod
// 2^bits. The national engine combines the regions' sums under SecAgg+ and
// decodes the national sum: the exact sum of every surviving region's
// clinics, averaged over the clinics the regions say they hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "aggregator/internal/model_publisher.h"
#include "aggregator/testing/round_engine_fixture.h"
#include "aggregator/testing/round_engine_peer.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/secure_random.h"

namespace tinyfed::aggregator {
namespace {

constexpr int kClinicsPerRegion = 4;

class NationalRoundTest : public testing::RoundEngineFixture {
 protected:
  void SetUp() override {
    RoundEngineFixture::SetUp();
    Regions(3);
    config_.min_cohort = 2;
    config_.dp.bits = 20;
    config_.dp.noise_multiplier = 0.01;  // the mean is then checkable value by value
  }
  void Regions(int n) {
    regions_ = n;
    config_.cohort_size = n;
    config_.national_clinics = n * kClinicsPerRegion;
  }

  // A clinic's update: small, and different for every clinic.
  static std::vector<float> Update(size_t dimension, int clinic) {
    std::vector<float> u(dimension);
    for (size_t j = 0; j < dimension; ++j) u[j] = 0.02f * std::sin(static_cast<float>(clinic * 7 + j));
    return u;
  }

  // Each region's clinics encode their updates with the national task's
  // parameters; the region's input is their sum mod 2^bits, as its own
  // SecAgg+ round hands it over. Also the national sum of all of them.
  void EncodeRegions(const v1::RoundTask& task) {
    const dp::DdgParams params = base::testing::ValueOrDie(dp::DdgParamsOf(task.ddg()), "the task's DDG parameters");
    dp::Seed rotation{};
    std::memcpy(rotation.data(), task.ddg().rotation_seed().data(), rotation.size());
    const uint32_t mask = (uint32_t{1} << task.secagg().bits()) - 1;
    dimension_ = task.ddg().dimension();
    region_sums_.assign(regions_, std::vector<uint32_t>(task.secagg().vector_length(), 0));
    mean_.assign(dimension_, 0.0);
    for (int r = 0; r < regions_; ++r) {
      for (int c = 0; c < kClinicsPerRegion; ++c) {
        const int clinic = r * kClinicsPerRegion + c;
        dp::Seed noise_seed{};
        noise_seed[0] = static_cast<uint8_t>(clinic + 1);
        const std::vector<float> update = Update(dimension_, clinic);
        const std::vector<uint32_t> encoded = base::testing::ValueOrDie(
            dp::DdgEncode(params, update, rotation, *dp::SecureRandom::FromSeed(noise_seed)), "an encoding");
        for (size_t j = 0; j < encoded.size(); ++j) region_sums_[r][j] = (region_sums_[r][j] + encoded[j]) & mask;
        for (size_t j = 0; j < dimension_; ++j) mean_[j] += update[j];
      }
    }
  }

  // Regions `taking_part` (by index) answer every phase; the others go
  // silent after `silent_after` (advertise_keys .. unmasking).
  void RunRegions(uint64_t round, const std::vector<int>& taking_part, v1::Phase silent_after) {
    std::map<int, Member> members;
    for (int r = 0; r < regions_; ++r) members.emplace(r, Join(tasks_[r], r, region_sums_[r]));
    for (auto& [r, m] : members) Advertise(round, Device(r), m);
    for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
      bool silent = false;
      for (auto& [r, m] : members) {
        const bool in = std::find(taking_part.begin(), taking_part.end(), r) != taking_part.end();
        if (!in && phase > silent_after) {
          silent = true;
          continue;
        }
        Answer(round, Device(r), m, phase, phase == v1::PHASE_MASKED_INPUT ? kClinicsPerRegion : 0);
      }
      if (silent) {  // the phase closes at its deadline
        env_.Advance(absl::Seconds(61));
        engine_->Tick();
      }
    }
  }

  void Observe() {
    testing::RoundEnginePeer::ObserveSecureSums(
        *engine_, [this](int64_t, std::span<const uint32_t> sum, const std::vector<std::string>& survivors) {
          sum_.assign(sum.begin(), sum.end());
          survivors_ = survivors;
        });
  }

  int regions_ = 0;
  std::vector<v1::RoundTask> tasks_;
  std::vector<std::vector<uint32_t>> region_sums_;
  std::vector<double> mean_;  // the sum of every clinic's update, until divided
  size_t dimension_ = 0;
  std::vector<uint32_t> sum_;
  std::vector<std::string> survivors_;
};

TEST_F(NationalRoundTest, TheNationalSumIsEveryRegionsClinicsAndTheMeanIsOverClinics) {
  Start();
  Observe();
  const std::vector<float> before = internal::HeadParameters(engine_->latest_head());
  const uint64_t round = Admit(regions_);
  for (int r = 0; r < regions_; ++r) tasks_.push_back(Task(round, r));
  // Noise and range are planned for the national cohort of clinics.
  EXPECT_EQ(tasks_[0].ddg().expected_clients(),
            static_cast<uint32_t>(regions_ * kClinicsPerRegion * (1.0 - config_.max_dropout)));
  EncodeRegions(tasks_[0]);
  RunRegions(round, {0, 1, 2}, v1::PHASE_UNMASKING);

  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok() && result->has_result()) << (result.ok() ? result->DebugString() : "");
  EXPECT_EQ(result->result().survivors(), static_cast<uint32_t>(regions_ * kClinicsPerRegion));
  // The exact national sum: every clinic of every region, mod 2^bits.
  std::vector<uint32_t> want(region_sums_[0].size(), 0);
  const uint32_t mask = (uint32_t{1} << config_.dp.bits) - 1;
  for (const auto& s : region_sums_) {
    for (size_t j = 0; j < want.size(); ++j) want[j] = (want[j] + s[j]) & mask;
  }
  EXPECT_EQ(sum_, want);
  EXPECT_EQ(survivors_.size(), static_cast<size_t>(regions_));
  // FedAvg at rate 1: the head moved by the decoded national sum over the
  // 12 clinics, which is their mean update up to the encoding's rounding.
  const std::vector<float> after = internal::HeadParameters(engine_->latest_head());
  ASSERT_EQ(after.size(), dimension_);
  const dp::DdgParams params = base::testing::ValueOrDie(dp::DdgParamsOf(tasks_[0].ddg()), "the DDG parameters");
  dp::Seed rotation{};
  std::memcpy(rotation.data(), tasks_[0].ddg().rotation_seed().data(), rotation.size());
  const std::vector<double> decoded = base::testing::ValueOrDie(dp::DdgDecodeSum(params, want, rotation), "decoding");
  const int clinics = regions_ * kClinicsPerRegion;
  double error = 0.0;
  for (size_t j = 0; j < dimension_; ++j) {
    EXPECT_NEAR(after[j] - before[j], decoded[j] / clinics, 1e-6) << "parameter " << j;
    error += std::abs(after[j] - before[j] - mean_[j] / clinics) / static_cast<double>(dimension_);
  }
  EXPECT_LT(error, 2e-3) << "the mean absolute error against the clinics' true mean update";
}

// Three regions lose one: the complete graph's self shares make t = 2 of
// 3 holders (secure_agg/params.h).
TEST_F(NationalRoundTest, ARegionThatDropsOutIsADropoutLikeAnyOther) {
  Start();
  Observe();
  const uint64_t round = Admit(regions_);
  for (int r = 0; r < regions_; ++r) tasks_.push_back(Task(round, r));
  EncodeRegions(tasks_[0]);
  // Region 2 shares its keys, then dies before its masked input.
  RunRegions(round, {0, 1}, v1::PHASE_SHARE_KEYS);
  auto result = Await(Device(0), round, v1::PHASE_RESULT);
  ASSERT_TRUE(result.ok() && result->has_result()) << (result.ok() ? result->DebugString() : "");
  EXPECT_EQ(result->result().survivors(), static_cast<uint32_t>(2 * kClinicsPerRegion));
  std::vector<uint32_t> want(region_sums_[0].size(), 0);
  const uint32_t mask = (uint32_t{1} << config_.dp.bits) - 1;
  for (int r : {0, 1}) {
    for (size_t j = 0; j < want.size(); ++j) want[j] = (want[j] + region_sums_[r][j]) & mask;
  }
  EXPECT_EQ(sum_, want);
}

TEST_F(NationalRoundTest, AMaskedInputMustSayHowManyClinicsItHolds) {
  Start();
  const uint64_t round = Admit(regions_);
  for (int r = 0; r < regions_; ++r) tasks_.push_back(Task(round, r));
  std::map<int, Member> members;
  for (int r = 0; r < regions_; ++r) {
    members.emplace(r, Join(tasks_[r], r, std::vector<uint32_t>(tasks_[r].secagg().vector_length(), 0)));
  }
  for (auto& [r, m] : members) Advertise(round, Device(r), m);
  for (auto& [r, m] : members) Answer(round, Device(r), m, v1::PHASE_SHARE_KEYS);
  auto await = Await(Device(0), round, v1::PHASE_MASKED_INPUT);
  ASSERT_TRUE(await.ok() && await->has_secagg());
  const v1::SecAggClientMessage masked =
      base::testing::ValueOrDie(members.at(0).client->Handle(await->secagg()), "a masked input");
  for (uint32_t contributors : {0u, 1u << 21}) {
    const absl::Status refused = Submit(Device(0), round, v1::PHASE_MASKED_INPUT, masked, contributors);
    EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
    EXPECT_NE(refused.message().find("contributors"), std::string::npos) << refused;
  }
  EXPECT_TRUE(Submit(Device(0), round, v1::PHASE_MASKED_INPUT, masked, kClinicsPerRegion).ok());
}

TEST_F(NationalRoundTest, AGatewaysRoundRefusesContributors) {
  config_.national_clinics = 0;
  config_.cohort_size = 4;
  config_.min_cohort = 3;
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  auto keys = members.begin()->second.client->AdvertiseKeys();
  ASSERT_TRUE(keys.ok());
  const absl::Status refused = Submit(Device(0), round, v1::PHASE_ADVERTISE_KEYS, *keys, 3);
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
}

}  // namespace
}  // namespace tinyfed::aggregator
