#include "tinyfed/sim/privacy_plan.h"

#include <gtest/gtest.h>

#include <cmath>

#include "base/testing/value_or_die.h"
#include "tinyfed/dp/pld_accountant.h"

namespace tinyfed::sim {
namespace {

Scenario Parsed(const std::string& dp, bool secagg = true) {
  auto s = ParseScenario(
      "[data]\npath = \"/x.csv\"\n[clinics]\ncount = 10\n[rounds]\nmax_rounds = 20\n"
      "cohort_size = 8\nmin_cohort = 5\n[secagg]\nmax_dropout = 0.25\nenabled = " +
          std::string(secagg ? "true" : "false") + "\n[training]\nepochs = 2\n" + dp,
      "/srv/plan.toml");
  return base::testing::ValueOrDie(std::move(s), "the test scenario");
}

const FederationShape kShape{.clinic_train_sizes = {100, 400, 200, 300, 500}, .embedding_size = 15, .classes = 4};

TEST(PrivacyPlan, PatientLevelNoiseShrinksWithTheClinicAndMeetsTheTarget) {
  auto p = PlanPrivacy(Parsed("[dp]\nunit = \"patient\"\nsampling_rate = 0.1\ntarget_epsilon = 6\n"), kShape);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->unit, "patient");
  EXPECT_EQ(p->accountant, "pld");
  EXPECT_EQ(p->steps_per_round, 20);
  EXPECT_EQ(p->head_parameters, 64u);
  EXPECT_EQ(p->expected_survivors, 6);
  EXPECT_EQ(p->smallest_clinic, 100u);
  EXPECT_EQ(p->median_clinic, 300u);
  EXPECT_LE(p->epsilon, 6.0);
  EXPECT_GT(p->epsilon, 5.9);
  // z sqrt(d) / (q n), then over sqrt(steps x clinics) on the round's mean.
  EXPECT_DOUBLE_EQ(p->step_noise_smallest, p->noise_multiplier * 8.0 / 10.0);
  EXPECT_DOUBLE_EQ(p->step_noise_median, p->noise_multiplier * 8.0 / 30.0);
  EXPECT_NEAR(p->round_noise, p->step_noise_median / std::sqrt(20.0 * 6.0), 1e-12);
  EXPECT_NE(FormatPrivacyPlan(*p).find("epsilon after 20 rounds: "), std::string::npos);
}

TEST(PrivacyPlan, ClinicLevelNoiseIsSharedByTheCohort) {
  auto p = PlanPrivacy(Parsed("[dp]\nnoise_multiplier = 2.0\n"), kShape);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->unit, "clinic");
  EXPECT_EQ(p->accountant, "rdp");
  EXPECT_DOUBLE_EQ(p->round_noise, 2.0 * 8.0 / 6.0);
  EXPECT_GT(p->epsilon, 0.0);
  EXPECT_NE(FormatPrivacyPlan(*p).find("mostly noise"), std::string::npos);
}

TEST(PrivacyPlan, NoDpSaysSo) {
  auto p = PlanPrivacy(Parsed("[dp]\nmode = \"off\"\n", /*secagg=*/false), kShape);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->unit, "none");
  EXPECT_NE(FormatPrivacyPlan(*p).find("No differential privacy"), std::string::npos);
}

}  // namespace
}  // namespace tinyfed::sim
