// The operator's page shows the fleet, rounds and models, and nothing a
// device sent reaches it unescaped.
#include "tinyfed/aggregator/status_page.h"

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

namespace tinyfed::aggregator {
namespace {

FederationStatus Example() {
  FederationStatus s;
  s.read_at = absl::FromUnixSeconds(1'800'000'000);
  s.epsilon_spent = 1.5;
  s.epsilon_budget = 8;
  s.delta = 1e-5;
  FleetDevice d;
  d.device_id = "clinic-7";
  d.enrolled = absl::FromUnixSeconds(1'799'990'000);
  d.last_report = absl::FromUnixSeconds(1'799'999'940);
  d.model_version = 2;
  d.holdout_accuracy = 0.875;
  d.holdout_samples = 40;
  d.confidence_histogram = {1, 5, 9};
  d.model_status = "<script>alert('x')</script>\x01 refused v3";
  s.devices.push_back(d);
  s.rounds.push_back({.round_id = 1,
                      .state = "done",
                      .selected = 6,
                      .survivors = 5,
                      .model_version = 2,
                      .epsilon = 0.75,
                      .reason = "",
                      .started_ms = 1'799'999'000'000,
                      .finished_ms = 1'799'999'100'000});
  s.rounds.push_back({.round_id = 2,
                      .state = "aborted",
                      .selected = 6,
                      .survivors = 0,
                      .model_version = 0,
                      .epsilon = 0,
                      .reason = "only 1 updates <arrived>",
                      .started_ms = 1'799'999'200'000,
                      .finished_ms = 0});
  s.models.push_back({.version = 1, .round_id = 0, .bundle_sha256 = std::string(32, '\x01'), .file = "m1"});
  s.models.push_back({.version = 2, .round_id = 1, .bundle_sha256 = std::string(32, '\x02'), .file = "m2"});
  s.rollouts.push_back({.version = 2,
                        .previous = 1,
                        .state = "rolled_back",
                        .started_ms = 1'799'999'100'000,
                        .decided_ms = 1'799'999'150'000,
                        .decided_by = "telemetry",
                        .reason = "8 canary gateways: held-out accuracy 80.0% -> 50.0% <worse>",
                        .rollback_version = 3,
                        .operator_request = "",
                        .canary = {"clinic-7"}});
  s.drift.push_back({.scope = "clinic-7", .flagged_ms = 1'799'999'900'000, .reason = "mean confidence 0.15 <low>"});
  return s;
}

TEST(StatusPageTest, ThePageShowsTheFleetRoundsAndModelsWithDeviceTextEscaped) {
  const std::string html = StatusPageHtml(Example());
  EXPECT_NE(html.find("model v2"), std::string::npos);
  EXPECT_NE(html.find("1 rounds done, 1 aborted"), std::string::npos);
  EXPECT_NE(html.find("epsilon 1.5000 of 8"), std::string::npos);
  EXPECT_NE(html.find("clinic-7"), std::string::npos);
  EXPECT_NE(html.find("87.5%"), std::string::npos);
  EXPECT_NE(html.find("60 s ago"), std::string::npos);
  EXPECT_NE(html.find("only 1 updates &lt;arrived&gt;"), std::string::npos);
  EXPECT_NE(html.find("<code>0202020202020202"), std::string::npos);
  // The device's text is inert: no tag, no control character.
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;? refused v3"), std::string::npos);
  EXPECT_EQ(html.find('\x01'), std::string::npos);
  // The rollout and the drift flag, with their evidence escaped.
  EXPECT_NE(html.find("id=\"rollouts-table\""), std::string::npos);
  EXPECT_NE(html.find("rolled_back"), std::string::npos);
  EXPECT_NE(html.find("80.0% -&gt; 50.0% &lt;worse&gt;"), std::string::npos);
  EXPECT_NE(html.find(">v3<"), std::string::npos);
  EXPECT_NE(html.find("id=\"drift-table\""), std::string::npos);
  EXPECT_NE(html.find("mean confidence 0.15 &lt;low&gt;"), std::string::npos);
  // Three confidence bars, and the epsilon chart with its budget line.
  EXPECT_NE(html.find("class=\"bars\""), std::string::npos);
  EXPECT_NE(html.find("budget 8"), std::string::npos);
}

TEST(StatusPageTest, TheJsonHoldsTheSameWithIsoTimes) {
  const nlohmann::json j = nlohmann::json::parse(StatusJson(Example()));
  EXPECT_EQ(j["read_at"], "2027-01-15T08:00:00Z");
  ASSERT_EQ(j["devices"].size(), 1u);
  EXPECT_EQ(j["devices"][0]["device_id"], "clinic-7");
  EXPECT_EQ(j["devices"][0]["model_status"], "<script>alert('x')</script>\x01 refused v3");
  EXPECT_EQ(j["devices"][0]["confidence_histogram"], nlohmann::json::array({1, 5, 9}));
  ASSERT_EQ(j["rounds"].size(), 2u);
  EXPECT_EQ(j["rounds"][1]["finished"], "");
  EXPECT_EQ(j["models"][1]["bundle_sha256"], "0202020202020202020202020202020202020202020202020202020202020202");
  ASSERT_EQ(j["rollouts"].size(), 1u);
  EXPECT_EQ(j["rollouts"][0]["state"], "rolled_back");
  EXPECT_EQ(j["rollouts"][0]["rollback_version"], 3);
  ASSERT_EQ(j["drift"].size(), 1u);
  EXPECT_EQ(j["drift"][0]["scope"], "clinic-7");
  EXPECT_EQ(j["drift"][0]["since"], "2027-01-15T07:58:20Z");
}

}  // namespace
}  // namespace tinyfed::aggregator
