// The exposition text Prometheus parses: HELP and TYPE per family,
// escaped label values, cumulative histogram buckets; and the engine's
// series after a round.
#include "tinyfed/aggregator/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "aggregator/testing/round_engine_fixture.h"

namespace tinyfed::aggregator {
namespace {

bool Has(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

// The value of the unlabelled series `name`, NaN if absent.
double Value(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return std::nan("");
  return std::stod(text.substr(at + name.size() + 2));
}

TEST(MetricsTest, CountersAndGaugesRenderWithTheirTypeAndEscapedLabels) {
  Metrics m;
  m.AddCounter("tinyfed_refusals_total", {{"kind", "size"}});
  m.AddCounter("tinyfed_refusals_total", {{"kind", "size"}}, 2);
  m.AddCounter("tinyfed_refusals_total", {{"kind", "a\"b\\c\nd"}});
  m.SetGauge("tinyfed_epsilon_spent", {}, 1.25);
  m.AddCounter("tinyfed_refusals_total", {{"kind", "size"}}, -5);  // a counter never goes down
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, "# TYPE tinyfed_refusals_total counter")) << text;
  EXPECT_TRUE(Has(text, "# HELP tinyfed_epsilon_spent Privacy spent so far (epsilon at the configured delta)."))
      << text;
  EXPECT_TRUE(Has(text, "tinyfed_refusals_total{kind=\"size\"} 3")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_refusals_total{kind=\"a\\\"b\\\\c\\nd\"} 1")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_epsilon_spent 1.25")) << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Metrics m;
  for (double seconds : {0.0002, 0.003, 0.003, 7.0}) m.Observe("tinyfed_call_seconds", {{"method", "Await"}}, seconds);
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, "tinyfed_call_seconds_bucket{method=\"Await\",le=\"0.0005\"} 1")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_call_seconds_bucket{method=\"Await\",le=\"0.005\"} 3")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_call_seconds_bucket{method=\"Await\",le=\"5\"} 3")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_call_seconds_bucket{method=\"Await\",le=\"+Inf\"} 4")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_call_seconds_count{method=\"Await\"} 4")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_call_seconds_sum{method=\"Await\"} 7.0062")) << text;
}

TEST(MetricsTest, TheCollectorRunsAtEachRender) {
  Metrics m;
  int runs = 0;
  m.SetCollector([&runs](Metrics& self) { self.SetGauge("tinyfed_population", {}, ++runs); });
  m.Render();
  EXPECT_TRUE(Has(m.Render(), "tinyfed_population 2"));
}

using EngineMetricsTest = testing::RoundEngineFixture;

TEST_F(EngineMetricsTest, ARoundShowsItsOutcomePhasesSurvivorsDropoutsAndPrivacy) {
  config_.min_cohort = 2;
  Start();
  const uint64_t round = Admit(4);
  auto members = Members(round, 4);
  for (auto& [device, m] : members) Advertise(round, device, m);
  // clinic-3 is silent in share_keys: dropped at its deadline.
  for (auto& [device, m] : members) {
    if (device != Device(3)) Answer(round, device, m, v1::PHASE_SHARE_KEYS);
  }
  env_.Advance(config_.share_keys_timeout + absl::Seconds(1));
  engine_->Tick();
  for (v1::Phase phase : {v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
    for (auto& [device, m] : members) {
      if (device != Device(3)) Answer(round, device, m, phase);
    }
  }
  ASSERT_EQ(engine_->latest_model().version(), 2u);
  const std::string text = engine_->metrics().Render();
  EXPECT_TRUE(Has(text, "tinyfed_rounds_total{outcome=\"done\"} 1")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_models_published_total 1")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_model_version 2")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_round_cohort_size 4")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_round_survivors{phase=\"advertise_keys\"} 4")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_round_survivors{phase=\"share_keys\"} 3")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_round_dropouts_total{phase=\"share_keys\"} 1")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_round_survivors{phase=\"unmasking\"} 3")) << text;
  // The share_keys phase ran until its deadline on the fake clock.
  EXPECT_TRUE(Has(text, "tinyfed_round_phase_seconds_bucket{phase=\"share_keys\",le=\"60\"} 0")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_round_phase_seconds_bucket{phase=\"share_keys\",le=\"120\"} 1")) << text;
  EXPECT_TRUE(Has(text, "tinyfed_population 4")) << text;
  const double spent = Value(text, "tinyfed_epsilon_spent");
  EXPECT_GT(spent, 0.0) << text;
  EXPECT_DOUBLE_EQ(Value(text, "tinyfed_epsilon_remaining"), config_.dp.epsilon_budget - spent) << text;
  EXPECT_NE(text.find("tinyfed_state_bytes "), std::string::npos) << text;
}

}  // namespace
}  // namespace tinyfed::aggregator
