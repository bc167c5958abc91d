#include "aggregator/internal/round_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "tinyfed/aggregator/noise.h"

namespace tinyfed::aggregator::internal {
namespace {

Config TestConfig() {
  Config c = DefaultConfig();
  c.cohort_size = 10;
  c.min_cohort = 5;
  c.max_dropout = 0.3;
  c.dp.noise_multiplier = 1.0;
  c.dp.target_epsilon = 0.0;
  return c;
}

TEST(RoundPlanTest, CohortTargetRoundsOverSelectionUp) {
  Config c = TestConfig();
  EXPECT_EQ(CohortTarget(c), 10u);
  c.over_selection = 0.25;
  EXPECT_EQ(CohortTarget(c), 13u);  // 12.5 up
}

TEST(RoundPlanTest, ShuffledIdsAreAPermutationFixedByTheSeed) {
  std::array<uint8_t, 32> seed{};
  seed[0] = 7;
  const auto ids = ShuffledIds(20, seed);
  auto sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 20; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(ShuffledIds(20, seed), ids);
  seed[0] = 8;
  EXPECT_NE(ShuffledIds(20, seed), ids);
}

TEST(RoundPlanTest, ASecAggPlanCarriesTheTaskEveryMemberNeeds) {
  const Config c = TestConfig();
  v1::ModelRef model;
  model.set_version(3);
  SecAggSeeds seeds;
  seeds.graph[0] = 1;
  seeds.rotation[0] = 2;
  auto plan = PlanSecAggRound(c, 4, 10, 84, {.noise_multiplier = 1.0, .bits = 16}, model, seeds);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const v1::RoundTask& t = plan->task;
  EXPECT_EQ(t.round_id(), 4u);
  EXPECT_EQ(t.cohort_size(), 10u);
  EXPECT_EQ(t.model().version(), 3u);
  EXPECT_EQ(t.training().seed(), 4u);
  EXPECT_EQ(t.secagg().vector_length(), 84u);  // the head's own length: the rotation pads nothing
  EXPECT_EQ(t.secagg().bits(), 16u);
  EXPECT_EQ(t.ddg().bits(), 16u);
  EXPECT_EQ(t.ddg().rotation(), v1::ROTATION_RANDOMIZED_DCT);
  EXPECT_EQ(t.secagg().graph_seed(), std::string(reinterpret_cast<const char*>(seeds.graph.data()), 32));
  EXPECT_EQ(t.ddg().rotation_seed(), std::string(reinterpret_cast<const char*>(seeds.rotation.data()), 32));
  EXPECT_FALSE(t.has_patient_dp());
  EXPECT_GE(plan->min_survivors, c.min_cohort);
  EXPECT_GE(plan->min_survivors, plan->params.threshold());
}

TEST(RoundPlanTest, TooFewDevicesForTheThresholdIsNoPlan) {
  const Config c = TestConfig();
  auto plan = PlanSecAggRound(c, 1, 3, 84, {.noise_multiplier = 1.0, .bits = 16}, v1::ModelRef(), SecAggSeeds());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(plan.status().message().find("must survive"), std::string::npos) << plan.status();
}

TEST(RoundPlanTest, APatientLevelPlanNamesTheDpSgdSteps) {
  Config c = TestConfig();
  c.dp.unit = DpUnit::kPatient;
  c.dp.sampling_rate = 0.05;
  c.training.set_epochs(2);
  auto plan = PlanSecAggRound(c, 1, 10, 84, {.noise_multiplier = 1.1, .bits = 16}, v1::ModelRef(), SecAggSeeds());
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(plan->task.has_patient_dp());
  EXPECT_EQ(plan->task.patient_dp().steps(), static_cast<uint64_t>(PatientStepsPerRound(c)));
  EXPECT_DOUBLE_EQ(plan->task.patient_dp().noise_multiplier(), 1.1);
  // Its charge is per patient: DP-SGD steps, countable by PLD.
  auto charge = SecAggRoundCharge(c, 1, 1.1, plan->ddg, 8, {2, 4, 8, 16, 32});
  ASSERT_TRUE(charge.ok());
  EXPECT_EQ(charge->mechanism, "patient_dp_sgd");
  ASSERT_EQ(charge->pld.size(), 1u);
  EXPECT_EQ(charge->pld[0].steps, PatientStepsPerRound(c));
}

TEST(RoundPlanTest, FewerSurvivorsCostMoreInAClinicLevelRound) {
  const Config c = TestConfig();
  auto plan = PlanSecAggRound(c, 1, 10, 84, {.noise_multiplier = 1.0, .bits = 16}, v1::ModelRef(), SecAggSeeds());
  ASSERT_TRUE(plan.ok());
  const std::vector<double> orders = {2, 4, 8, 16, 32};
  auto many = SecAggRoundCharge(c, 1, 1.0, plan->ddg, 10, orders);
  auto few = SecAggRoundCharge(c, 1, 1.0, plan->ddg, 7, orders);
  ASSERT_TRUE(many.ok() && few.ok());
  EXPECT_EQ(many->mechanism, "distributed_discrete_gaussian");
  for (size_t i = 0; i < orders.size(); ++i) EXPECT_GT(few->rdp[i], many->rdp[i]);
}

TEST(RoundPlanTest, APlainTaskCarriesClipAndCompression) {
  Config c = TestConfig();
  c.secure_aggregation = false;
  c.compression = v1::COMPRESSION_TOPK;
  c.topk_fraction = 0.2;
  const v1::RoundTask t = PlanPlainRound(c, 2, 6, v1::ModelRef());
  EXPECT_EQ(t.cohort_size(), 6u);
  EXPECT_EQ(t.plain().compression(), v1::COMPRESSION_TOPK);
  EXPECT_FLOAT_EQ(t.plain().topk_fraction(), 0.2f);
  EXPECT_FLOAT_EQ(t.plain().clip(), static_cast<float>(c.dp.clip));
  EXPECT_FALSE(t.has_secagg());
}

TEST(RoundPlanTest, TheBudgetCheckSaysWhereEpsilonWouldGo) {
  Config c = TestConfig();
  c.dp.mode = DpMode::kCentral;
  const auto dir = std::filesystem::path(::testing::TempDir()) / "round_plan_budget";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  c.dp.epsilon_budget = 1.0;
  auto ledger = dp::PrivacyLedger::Open(dir / "ledger.db", {.epsilon = 1.0, .delta = 1e-5});
  ASSERT_TRUE(ledger.ok());
  auto cheap = CentralRoundCharge(c, 1, 50.0, 5, (*ledger)->orders());
  ASSERT_TRUE(cheap.ok());
  EXPECT_TRUE(CheckBudget(c, **ledger, *cheap).ok());
  auto dear = CentralRoundCharge(c, 1, 0.5, 5, (*ledger)->orders());
  ASSERT_TRUE(dear.ok());
  const absl::Status refused = CheckBudget(c, **ledger, *dear);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("past the budget of 1"), std::string_view::npos) << refused;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tinyfed::aggregator::internal
