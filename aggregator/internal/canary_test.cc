#include "aggregator/internal/canary.h"

#include <gtest/gtest.h>

namespace tinyfed::aggregator::internal {
namespace {

// A canary gateway's report: `samples` held out, accuracy before and after,
// and how many samples each way the two heads disagree on.
CanaryReport Report(uint64_t samples, double before, double after, uint64_t worse, uint64_t better) {
  const std::vector<uint64_t> confident = {0, 0, 0, 0, 0, 0, 0, 0, 0, samples};
  return {.before = {.model_version = 1, .samples = samples, .accuracy = before, .confidence_histogram = confident},
          .after = {.model_version = 2, .samples = samples, .accuracy = after, .confidence_histogram = confident},
          .regressions = worse,
          .improvements = better};
}

TEST(CanaryTest, RollsBackADropOnlyWhenTheDisagreementsShowIt) {
  RolloutConfig config;  // max drop 3 points at p <= 0.05
  CanaryEvidence clear;
  for (const char* d : {"a", "b", "c"}) clear.reports[d] = Report(100, 0.80, 0.60, 25, 5);
  const CanaryVerdict rolled_back = JudgeCanary(config, clear);
  EXPECT_TRUE(rolled_back.regression) << rolled_back.summary;
  EXPECT_NE(rolled_back.summary.find("held-out accuracy 80.0% -> 60.0%"), std::string::npos) << rolled_back.summary;
  // The same 4-point drop on few disagreements is noise: promoted.
  CanaryEvidence noisy;
  noisy.reports["a"] = Report(50, 0.80, 0.76, 3, 1);
  EXPECT_FALSE(JudgeCanary(config, noisy).regression);
  // A drop within the threshold is promoted however sure.
  CanaryEvidence small;
  small.reports["a"] = Report(1000, 0.80, 0.78, 20, 0);
  EXPECT_FALSE(JudgeCanary(config, small).regression);
}

TEST(CanaryTest, RollsBackOnRefusalsAndOnLowConfidence) {
  RolloutConfig config;
  CanaryEvidence refused;
  refused.refused.insert("a");
  EXPECT_TRUE(JudgeCanary(config, refused).regression);
  config.max_refusals = 1;
  EXPECT_FALSE(JudgeCanary(config, refused).regression);

  CanaryEvidence unsure;
  CanaryReport r = Report(100, 0.8, 0.8, 0, 0);
  r.after.confidence_histogram = {0, 0, 10, 10, 10, 0, 0, 0, 0, 70};  // 30 % below 0.5
  unsure.reports["a"] = r;
  EXPECT_TRUE(JudgeCanary(config, unsure).regression);
}

TEST(CanaryTest, ChoosesNamedDevicesADrawnFractionAndEnoughToDecide) {
  std::vector<std::string> population;
  for (int i = 0; i < 1000; ++i) population.push_back("clinic-" + std::to_string(i));
  RolloutConfig config;
  config.canary_fraction = 0.25;
  config.canary_devices = {"clinic-7"};
  const std::set<std::string> canary = ChooseCanary(config, population, 5);
  EXPECT_TRUE(canary.contains("clinic-7"));
  EXPECT_GT(canary.size(), 200u);
  EXPECT_LT(canary.size(), 300u);
  EXPECT_EQ(canary, ChooseCanary(config, population, 5)) << "the same for the same version";
  EXPECT_NE(canary, ChooseCanary(config, population, 6)) << "each version tries other gateways first";
  // A small federation still gets canary_reports gateways.
  config.canary_devices.clear();
  config.canary_fraction = 0.01;
  config.canary_reports = 4;
  EXPECT_EQ(ChooseCanary(config, {"a", "b", "c", "d", "e", "f"}, 1).size(), 4u);
}

}  // namespace
}  // namespace tinyfed::aggregator::internal
