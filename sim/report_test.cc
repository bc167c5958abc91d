// What a simulation report holds: report.json field by field, rounds.csv
// row by row, and the summary's privacy line, for a report built by hand.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"
#include "tinyfed/base/file_io.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim {
namespace {

Metrics Scored(double accuracy) {
  Metrics m;
  m.accuracy = accuracy;
  m.loss = 1.0 - accuracy;
  m.sensitivity = {accuracy, accuracy - 0.1};
  m.specificity = {accuracy - 0.1, accuracy};
  return m;
}

SimulationReport SampleReport() {
  SimulationReport r;
  r.scenario.name = "report-test";
  r.scenario.seed = 5;
  r.scenario.clinics.count = 2;
  r.scenario.federation = aggregator::DefaultConfig();
  r.scenario.federation.max_rounds = 3;
  r.scenario.federation.cohort_size = 2;
  r.scenario.federation.dp.target_epsilon = 4.0;
  r.backbone = "mlp, given";
  r.embedding_size = 16;
  r.test_samples = 100;
  r.label_names = {"benign", "malignant"};
  r.initial = Scored(0.5);
  r.centralized = Scored(0.95);
  r.federated = Scored(0.9);
  r.mean_local_only_on_test = 0.8;
  for (int i = 0; i < 2; ++i) {
    ClinicResult c;
    c.id = "clinic-000" + std::to_string(i);
    c.train_samples = 30 + static_cast<size_t>(i);
    c.holdout_samples = 10;
    c.local_only = 0.7;
    c.federated = 0.85;
    c.personalized = 0.9;
    c.local_only_on_test = 0.8;
    r.clinics.push_back(c);
  }
  for (int round = 1; round <= 3; ++round) {
    RoundResult x;
    x.round = round;
    x.completed = round != 2;
    x.reason = round == 2 ? "only 1 clinics online (2 needed)" : "";
    x.test = Scored(0.6 + 0.1 * round);
    x.available = round == 2 ? 1 : 2;
    x.selected = x.available;
    x.survivors = x.completed ? 2 : 0;
    x.epsilon = round == 1 ? 1.5 : 3.0;
    x.bytes_up_per_client = 1000.0 * round;
    x.bytes_down_per_client = 2000.0;
    x.update_bits_per_coordinate = 20.5;
    x.protocol_bits_per_coordinate = 40.25;
    x.model_bytes_down_per_client = 1500.0;
    x.simulated_seconds = 12.5;
    r.rounds.push_back(x);
  }
  r.epsilon = 3.0;
  r.delta = 1e-5;
  r.noise_multiplier = 1.25;
  r.wall_seconds = 7.0;
  return r;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = std::filesystem::path(::testing::TempDir()) /
           ("report_test_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(out_);
  }
  void TearDown() override { std::filesystem::remove_all(out_); }
  std::string Read(const std::string& name) {
    auto bytes = base::ReadFileBytes(out_ / name, 1 << 20);
    EXPECT_TRUE(bytes.ok()) << name << ": " << bytes.status();
    return bytes.ok() ? *bytes : "";
  }
  std::filesystem::path out_;
};

TEST_F(ReportTest, TheJsonHoldsEveryRoundClinicAndBaseline) {
  ASSERT_TRUE(WriteReport(SampleReport(), out_).ok());
  const nlohmann::json j = nlohmann::json::parse(Read("report.json"));
  EXPECT_EQ(j["schema"], "tinyfed.sim.report/1");
  EXPECT_EQ(j["scenario"]["name"], "report-test");
  EXPECT_EQ(j["scenario"]["seed"], 5);
  EXPECT_EQ(j["scenario"]["dp_mode"], "distributed");
  EXPECT_DOUBLE_EQ(j["scenario"]["noise_multiplier"], 1.25);
  EXPECT_DOUBLE_EQ(j["privacy"]["epsilon"], 3.0);
  EXPECT_DOUBLE_EQ(j["privacy"]["delta"], 1e-5);
  EXPECT_EQ(j["privacy"]["unit"], "clinic");
  EXPECT_TRUE(j["privacy"]["differentially_private"]);
  EXPECT_DOUBLE_EQ(j["baselines"]["centralized"]["accuracy"], 0.95);
  EXPECT_DOUBLE_EQ(j["baselines"]["federated"]["accuracy"], 0.9);
  EXPECT_DOUBLE_EQ(j["baselines"]["clinic_slices"]["personalized"], 0.9);
  ASSERT_EQ(j["rounds"].size(), 3u);
  EXPECT_FALSE(j["rounds"][1]["completed"]);
  EXPECT_EQ(j["rounds"][1]["reason"], "only 1 clinics online (2 needed)");
  EXPECT_DOUBLE_EQ(j["rounds"][2]["test"]["accuracy"], 0.9);
  EXPECT_DOUBLE_EQ(j["rounds"][2]["bytes_up_per_client"], 3000.0);
  EXPECT_DOUBLE_EQ(j["rounds"][2]["update_bits_per_coordinate"], 20.5);
  EXPECT_DOUBLE_EQ(j["rounds"][2]["protocol_bits_per_coordinate"], 40.25);
  EXPECT_DOUBLE_EQ(j["rounds"][2]["model_bytes_down_per_client"], 1500.0);
  ASSERT_EQ(j["clinics"].size(), 2u);
  EXPECT_EQ(j["clinics"][1]["id"], "clinic-0001");
  EXPECT_EQ(j["clinics"][1]["train_samples"], 31);
  EXPECT_FALSE(j.contains("decision"));  // no positive class
}

TEST_F(ReportTest, TheCsvHasAHeaderAndOneRowPerRound) {
  ASSERT_TRUE(WriteReport(SampleReport(), out_).ok());
  std::istringstream csv(Read("rounds.csv"));
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header.substr(0, 29), "round,completed,accuracy,loss");
  std::vector<std::string> rows;
  while (std::getline(csv, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].substr(0, 22), "1,1,0.700000,0.300000,");
  EXPECT_EQ(rows[1].substr(0, 4), "2,0,");
}

TEST_F(ReportTest, TheSummarySaysWhatWasSpentAndWhatWasPromised) {
  ASSERT_TRUE(WriteReport(SampleReport(), out_).ok());
  const std::string summary = Read("summary.md");
  EXPECT_NE(summary.find("# report-test"), std::string::npos);
  EXPECT_NE(summary.find("Privacy: epsilon 3.000 spent of a target of 4 over 3 rounds"), std::string::npos) << summary;
  EXPECT_NE(summary.find("Rounds completed 2 of 3"), std::string::npos) << summary;
  EXPECT_NE(summary.find("20.50 bits of encoded update and 40.25 bits of protocol"), std::string::npos) << summary;
}

// The served head against the federated one, clinic by clinic: on the
// slices one clinic is 2 points below; on the case mix, half a point, which
// is not more than one.
TEST_F(ReportTest, TheSummaryCountsClinicsServedMoreThanAPointBelowTheFederatedHead) {
  SimulationReport r = SampleReport();
  for (ClinicResult& c : r.clinics) {
    c.served = c.federated;
    c.test_mix = {.local_only = 0.75, .federated = 0.8, .served = 0.8};
  }
  r.clinics[1].served = r.clinics[1].federated - 0.02;
  r.clinics[1].served_personal = true;
  r.clinics[1].test_mix.served = 0.795;
  ASSERT_TRUE(WriteReport(r, out_).ok());
  const std::string summary = Read("summary.md");
  EXPECT_NE(summary.find("personal on 1 of 2 clinics; more than 1 point below the federated head on 1, the worst "
                         "2.00 points below it"),
            std::string::npos)
      << summary;
  EXPECT_NE(summary.find("(100 cases instead of the slice's few dozen; mean): local-only 75.00 %, federated 80.00 %, "
                         "served 79.75 %; served more than 1 point below the federated head on 0, the worst 0.50 "
                         "points below it"),
            std::string::npos)
      << summary;
  const nlohmann::json j = nlohmann::json::parse(Read("report.json"));
  EXPECT_DOUBLE_EQ(j["baselines"]["clinic_case_mix"]["served"], 0.7975);
  EXPECT_EQ(j["baselines"]["clinic_case_mix"]["served_below_federated"], 0);
  EXPECT_DOUBLE_EQ(j["clinics"][1]["test_mix"]["served"], 0.795);
  EXPECT_DOUBLE_EQ(j["clinics"][1]["validation_mix"]["served"], -1.0);
  EXPECT_FALSE(j["validation"].contains("clinic_case_mix"));

  // Not measured on one clinic: no mean that would hide it.
  r.clinics[0].test_mix.served = -1.0;
  std::filesystem::remove_all(out_);
  ASSERT_TRUE(WriteReport(r, out_).ok());
  EXPECT_EQ(Read("summary.md").find("weighted to each clinic's class shares"), std::string::npos);
}

TEST_F(ReportTest, GatewayProcessesPeakMemoryIsReportedWhenMeasured) {
  SimulationReport r = SampleReport();
  ASSERT_TRUE(WriteReport(r, out_).ok());
  EXPECT_FALSE(nlohmann::json::parse(Read("report.json")).contains("gateway_peak_rss_bytes"));
  EXPECT_EQ(Read("summary.md").find("peak resident memory"), std::string::npos);
  r.gateway_peak_rss_bytes = {30'000'000, 10'000'000, 20'000'000};
  ASSERT_TRUE(WriteReport(r, out_).ok());
  const auto j = nlohmann::json::parse(Read("report.json"));
  EXPECT_EQ(j["gateway_peak_rss_bytes"]["gateways"], 3);
  EXPECT_EQ(j["gateway_peak_rss_bytes"]["median"], 20'000'000);
  EXPECT_EQ(j["gateway_peak_rss_bytes"]["max"], 30'000'000);
  EXPECT_NE(Read("summary.md").find("peak resident memory: median 20.0 MB, largest 30.0 MB (3 gateways)"),
            std::string::npos)
      << Read("summary.md");
}

TEST_F(ReportTest, WithoutDpTheSummaryNeverReadsAsPerfectPrivacy) {
  SimulationReport r = SampleReport();
  r.scenario.federation.dp.mode = aggregator::DpMode::kOff;
  r.epsilon = 0.0;
  ASSERT_TRUE(WriteReport(r, out_).ok());
  EXPECT_NE(Read("summary.md").find("**no differential privacy**"), std::string::npos);
  EXPECT_FALSE(nlohmann::json::parse(Read("report.json"))["privacy"]["differentially_private"]);
}

TEST_F(ReportTest, AnUnwritableDirectoryIsAnErrorNamingIt) {
  std::filesystem::create_directories(out_.parent_path());
  std::ofstream(out_) << "a file where the directory should be";
  const absl::Status s = WriteReport(SampleReport(), out_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(out_.string()), std::string_view::npos) << s;
}

}  // namespace
}  // namespace tinyfed::sim
