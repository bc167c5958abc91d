// The simulation end to end on Breast Cancer Wisconsin: it learns, it is
// reproducible from its seed, both transports agree, and bad scenarios get
// errors that name the key and line.
#include "tinyfed/sim/simulation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include "absl/strings/str_format.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/sim/scenario.h"

namespace tinyfed::sim {
namespace {

std::filesystem::path DataDir() {
  const char* dir = std::getenv("TINYFED_DATA_DIR");
  return dir != nullptr ? dir : ".cache/data";
}

const char* kScenario = R"(
name = "test-bc"
seed = 3
baseline_epochs = 30
[data]
path = "$TINYFED_DATA_DIR/breast_cancer.csv"
[backbone]
arch = "mlp"
hidden = 32
embedding = 16
epochs = 40
[partition]
kind = "dirichlet"
alpha = 1.0
[clinics]
count = 6
dropout = { training = 0.1, share_keys = 0.05 }
[rounds]
max_rounds = 8
cohort_size = 5
min_cohort = 3
over_selection = 0.2
[training]
epochs = 3
batch_size = 16
learning_rate = 0.1
[dp]
clip = 1.0
noise_multiplier = 0.3
[secagg]
max_dropout = 0.4
)";

class SimulationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(DataDir() / "breast_cancer.csv")) GTEST_SKIP() << "run scripts/fetch_data.sh";
    work_ = std::filesystem::temp_directory_path() / ("tinyfed-sim-test-" + std::to_string(getpid()));
  }
  void TearDown() override { std::filesystem::remove_all(work_); }

  // Fills *out; the caller checks with ASSERT_NO_FATAL_FAILURE.
  void Run(TransportKind transport, SimulationReport* out, const std::string& text = kScenario) {
    auto scenario = ParseScenario(text, "/tmp/test-bc.toml");
    ASSERT_TRUE(scenario.ok()) << scenario.status();
    scenario->transport = transport;
    auto report = RunSimulation(*scenario, work_ / "run");
    ASSERT_TRUE(report.ok()) << report.status();
    *out = *std::move(report);
  }
  std::filesystem::path work_;
};

// Clinics that come online only hours into a diurnal federation still
// enroll and take part: without dropouts every selected clinic survives.
// (Enrollment tokens are timed by the simulated clock.)
TEST_F(SimulationTest, ClinicsFirstOnlineLateStillJoin) {
  std::string text = kScenario;
  text.replace(text.find("dropout = { training = 0.1, share_keys = 0.05 }"),
               std::string("dropout = { training = 0.1, share_keys = 0.05 }").size(),
               "availability = \"diurnal\"\nmin_availability = 0.5\nround_hours = 2");
  SimulationReport r;
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &r, text));
  std::set<int> sizes;
  for (const auto& x : r.rounds) {
    if (x.selected < 3) continue;  // too few online to start
    EXPECT_TRUE(x.completed) << "round " << x.round << ": " << x.reason;
    EXPECT_EQ(x.survivors, x.selected) << "round " << x.round;
    sizes.insert(x.selected);
  }
  EXPECT_GT(sizes.size(), 1u) << "availability never varied: the test shows nothing";
}

// Solar gateways whose policy asks for half a charge sit out the night's
// rounds and take part by day; every gateway holds out a fifth of its
// samples and the report says what each one serves.
TEST_F(SimulationTest, SolarGatewaysSitOutTheNightAndServeTheirChosenHead) {
  std::string text = kScenario;
  text.replace(text.find("dropout = { training = 0.1, share_keys = 0.05 }"),
               std::string("dropout = { training = 0.1, share_keys = 0.05 }").size(),
               "round_hours = 3\nsolar_fraction = 0.5\neligibility = { min_battery = 0.5 }\n"
               "holdout_fraction = 0.2");
  SimulationReport r;
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &r, text));
  ASSERT_EQ(r.rounds.size(), 8u);
  // Rounds every 3 hours from midnight: the 3 solar gateways' batteries are
  // under half from 18:00 (drained) until 09:00 (charged).
  for (const RoundResult& x : r.rounds) {
    const double hour = std::fmod((x.round - 1) * 3.0, 24.0);
    const bool charged = SolarCharge(hour) >= 0.5;
    EXPECT_EQ(x.ineligible, charged ? 0 : 3) << "round " << x.round << " at " << hour << ":00";
  }
  EXPECT_GT(SolarCharge(15.0), SolarCharge(6.0));
  for (const ClinicResult& c : r.clinics) {
    EXPECT_GE(c.served, 0.0) << c.id;
    for (const OnCaseMix& mix : {c.test_mix, c.validation_mix}) {
      EXPECT_GE(mix.served, 0.0) << c.id;
      EXPECT_GE(mix.local_only, 0.0) << c.id;
    }
    // Where the gateway serves the federated head, its answers through
    // Predict and the simulator's own scoring of that head agree, on the
    // slice and on every test case.
    if (!c.served_personal) {
      EXPECT_DOUBLE_EQ(c.served, c.federated) << c.id;
      EXPECT_NEAR(c.test_mix.served, c.test_mix.federated, 1e-12) << c.id;
      EXPECT_NEAR(c.validation_mix.served, c.validation_mix.federated, 1e-12) << c.id;
    }
  }
}

// The canary and drift watch through the simulator: round 4's cohort
// trains on swapped labels, and from round 5 two clinics' cases come from a
// new instrument. The canary rolls round 4's model back before anyone
// outside it installs it; the drift watch flags the two clinics.
TEST_F(SimulationTest, ACanaryRollsBackTheBadRoundAndTheDriftWatchFlagsTheShiftedClinics) {
  std::string text = kScenario;
  text.replace(text.find("dropout = { training = 0.1, share_keys = 0.05 }"),
               std::string("dropout = { training = 0.1, share_keys = 0.05 }").size(),
               "holdout_fraction = 0.3\ncases_per_round = 40");
  // Trusted-aggregator rounds without clipping, and long local training:
  // one round can ruin the model.
  text.replace(
      text.find("[training]"), std::string::npos,
      "[training]\nepochs = 20\nbatch_size = 16\nlearning_rate = 0.5\n[dp]\nmode = \"off\"\nclip = 100.0\n[secagg]\n"
      "enabled = false\n");
  text +=
      "[faults]\nflipped_labels_round = 4\ninput_shift_round = 5\nshifted_clinics = 2\nshift_scale = 0.2\n"
      "shift_offset = 3.0\n[rollout]\ncanary_fraction = 0.3\ncanary_reports = 2\n";
  SimulationReport r;
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &r, text));
  ASSERT_EQ(r.rounds.size(), 8u);
  for (const RoundResult& x : r.rounds) {
    EXPECT_EQ(x.installed_outside_canary, 0) << "round " << x.round;
    if (x.completed) {
      EXPECT_FALSE(x.rollout.empty() || x.rollout == "in canary") << "round " << x.round;
    }
  }
  EXPECT_TRUE(r.rounds[3].rollout.starts_with("rolled back")) << r.rounds[3].rollout;
  EXPECT_EQ(r.rounds[3].test.accuracy, r.rounds[2].test.accuracy) << "the federation serves round 3's model again";
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.rounds[i].drift_devices, 0) << "round " << i + 1 << ", before the shift";
  EXPECT_GE(r.rounds[7].drift_devices, 1) << "flagged by round 8, three rounds into the shift";
  EXPECT_LE(r.rounds[7].drift_devices, 2);
}

TEST_F(SimulationTest, LearnsAndReportsEverything) {
  SimulationReport r;
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &r));
  ASSERT_EQ(r.rounds.size(), 8u);
  int completed = 0, dropouts = 0;
  for (const auto& x : r.rounds) {
    completed += x.completed;
    dropouts += x.dropouts;
    if (x.completed) {
      EXPECT_GT(x.bytes_up_per_client, 0);
      EXPECT_GT(x.bytes_down_per_client, 0);
      EXPECT_GT(x.epsilon, 0);
      // The masked update is about `bits` per coordinate (more with padding).
      EXPECT_GE(x.update_bits_per_coordinate, r.scenario.federation.dp.bits);
      EXPECT_GT(x.protocol_bits_per_coordinate, 0);
      EXPECT_LE(x.model_bytes_down_per_client, x.bytes_down_per_client);
    }
  }
  EXPECT_GE(completed, 6);
  EXPECT_GT(dropouts, 0);  // the scenario drops about 15 % per round
  EXPECT_GT(r.federated.accuracy, 0.85);
  EXPECT_GT(r.centralized.accuracy, 0.85);
  EXPECT_LT(r.initial.accuracy, 0.7);
  EXPECT_EQ(r.clinics.size(), 6u);
  ASSERT_EQ(r.federated.sensitivity.size(), 2u);

  ASSERT_TRUE(WriteReport(r, work_ / "out").ok());
  for (const char* f : {"report.json", "rounds.csv", "summary.md"}) {
    EXPECT_TRUE(std::filesystem::exists(work_ / "out" / f)) << f;
  }
  std::ifstream in(work_ / "out" / "summary.md");
  const std::string summary(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(summary.find(absl::StrFormat("Privacy: epsilon %.3f spent of", r.epsilon)), std::string::npos) << summary;
  EXPECT_NE(summary.find("RDP accountant"), std::string::npos) << summary;
  EXPECT_NE(summary.find(absl::StrFormat("balanced accuracy %.2f %%", 100 * r.federated.balanced_accuracy())),
            std::string::npos)
      << summary;
  EXPECT_LE(r.federated.worst_sensitivity(), r.federated.balanced_accuracy());
}

// The shipped scenario whose backbone is an ONNX file: imported, fine-tuned
// on the public split, quantized and federated end to end.
TEST(ShippedScenario, AnImportedOnnxBackboneRunsEndToEnd) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "install dataset-fashion-mnist";
  }
  auto scenario = ReadScenario(std::filesystem::path(TINYFED_SCENARIO_DIR) / "onnx-fmnist.toml");
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  const auto work = std::filesystem::temp_directory_path() / ("tinyfed-sim-onnx-" + std::to_string(getpid()));
  auto report = RunSimulation(*scenario, work);
  std::filesystem::remove_all(work);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_NE(report->backbone.find("imported from niid_cnn.onnx (ONNX)"), std::string::npos) << report->backbone;
  ASSERT_EQ(report->rounds.size(), 20u);
  for (const RoundResult& r : report->rounds) EXPECT_TRUE(r.completed) << "round " << r.round << ": " << r.reason;
  // Far above the zero head's 10 % on ten classes (75 % at seed 11).
  EXPECT_GT(report->federated.accuracy, 0.5);
  EXPECT_LE(report->epsilon, 8.0);
}

TEST(Metrics, BalancedAccuracyAndWorstSensitivityIgnoreClassesWithoutSamples) {
  Metrics m;
  m.sensitivity = {1.0, std::nan(""), 0.5};
  EXPECT_DOUBLE_EQ(m.balanced_accuracy(), 0.75);
  EXPECT_DOUBLE_EQ(m.worst_sensitivity(), 0.5);
  EXPECT_TRUE(std::isnan(Metrics().balanced_accuracy()));
}

// "epsilon 0.000" with DP off read as perfect privacy; a federation below
// its clinics' own heads went unremarked.
TEST(SimulationReport, SaysWhenThereIsNoPrivacyAndWhenFederatingDoesNotPay) {
  SimulationReport r;
  r.scenario.name = "no-dp";
  r.scenario.federation.dp.mode = aggregator::DpMode::kOff;
  r.federated.accuracy = 0.70;
  r.mean_local_only_on_test = 0.80;
  const auto dir = std::filesystem::path(::testing::TempDir()) / "tinyfed-report-no-dp";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WriteReport(r, dir).ok());
  std::ifstream in(dir / "summary.md");
  const std::string summary(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(summary.find("**no differential privacy**"), std::string::npos) << summary;
  EXPECT_EQ(summary.find("epsilon 0.000"), std::string::npos) << summary;
  EXPECT_NE(summary.find("below the clinics' local-only mean (80.00 %)"), std::string::npos) << summary;
  std::filesystem::remove_all(dir);
}

// Same seed, same accuracy, privacy, participants and traffic in every round.
TEST_F(SimulationTest, SameSeedSameReportOnBothTransports) {
  SimulationReport a, b, g;
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &a));
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &b));
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kGrpc, &g));
  for (const SimulationReport* other : {&b, &g}) {
    ASSERT_EQ(a.rounds.size(), other->rounds.size());
    for (size_t i = 0; i < a.rounds.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(a.rounds[i].completed, other->rounds[i].completed);
      EXPECT_EQ(a.rounds[i].survivors, other->rounds[i].survivors);
      EXPECT_EQ(a.rounds[i].test.accuracy, other->rounds[i].test.accuracy);
      EXPECT_EQ(a.rounds[i].epsilon, other->rounds[i].epsilon);
    }
    EXPECT_EQ(a.federated.accuracy, other->federated.accuracy);
  }
  for (size_t i = 0; i < a.rounds.size(); ++i) {
    EXPECT_EQ(a.rounds[i].bytes_up_per_client, b.rounds[i].bytes_up_per_client);
  }
}

// The trusted-aggregator deployment: no SecAgg+, central DP or none, and
// compressed updates with error feedback.
TEST_F(SimulationTest, TrustedAggregatorWithCompression) {
  for (const auto& [mode, compression] : {std::pair{"central", "topk"}, std::pair{"off", "int8"}}) {
    SCOPED_TRACE(mode);
    std::string text = kScenario;
    text.replace(text.find("[dp]\n"), 4, std::string("[dp]\nmode = \"") + mode + "\"");
    text.replace(
        text.find("[secagg]\n"), 8,
        std::string("[compression]\nkind = \"") + compression + "\"\ntopk_fraction = 0.2\n[secagg]\nenabled = false");
    auto scenario = ParseScenario(text, "/tmp/test-bc.toml");
    ASSERT_TRUE(scenario.ok()) << scenario.status();
    auto r = RunSimulation(*scenario, work_ / "plain");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->federated.accuracy, 0.85);
    EXPECT_EQ(r->epsilon > 0, std::string(mode) == "central");
    double up = 0;
    for (const auto& x : r->rounds) up = std::max(up, x.bytes_up_per_client);
    EXPECT_GT(up, 0);
    EXPECT_LT(up, 4 * 34 + 2000);  // 34 head values: int8 or 20 % of them, plus the headers
  }
}

// Updates compressed to a count sketch of half the head's values (Chen et al.
// 2022) still sum under SecAgg+ and decode to a model that learns; the
// encoded update is half as long.
TEST_F(SimulationTest, SecAggWithACountSketch) {
  std::string text = kScenario;
  text.replace(text.find("[dp]\n"), 4, "[dp]\nsketch_fraction = 0.5");
  SimulationReport r;
  ASSERT_NO_FATAL_FAILURE(Run(TransportKind::kInProcess, &r, text));
  int completed = 0;
  for (const auto& x : r.rounds) {
    if (!x.completed) continue;
    ++completed;
    // 17 encoded values for 34 head values, at the chosen bits each and
    // packed to whole bytes (less where a clinic dropped before it
    // uploaded: the mean counts it).
    EXPECT_LE(x.update_bits_per_coordinate, 0.5 * r.bits + 8.0 / 34) << "round " << x.round;
    EXPECT_GT(x.update_bits_per_coordinate, 0.25 * r.bits) << "round " << x.round;
  }
  EXPECT_GE(completed, 6);
  EXPECT_GT(r.federated.accuracy, 0.85);
}

TEST(ScenarioTest, ErrorsNameTheKeyAndLine) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    auto s = ParseScenario(text, "/srv/sims/plan.toml");
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_NE(s.status().message().find(needle), std::string::npos) << s.status().message();
  };
  const std::string data = "[data]\npath = \"/x.csv\"\n";
  expect_error("name = \"x\"\n", "missing required section [data]");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[clinics]\ncount = 4\ncolour = 2\n",
               "plan.toml:7: clinics.colour: unknown key");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[partition]\nalpha = -1\n",
               "plan.toml:6: partition.alpha: must be in");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[clinics]\ndropout = { training = 2 }\n",
               "plan.toml:6: clinics.dropout.training: must be in [0, 1]");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[clinics]\ndropout = { sharekeys = 0.1 }\n",
               "clinics.dropout.sharekeys: unknown key");
  expect_error(data + "[rounds]\nmax_rounds = 5\ntransport = \"tcp\"\n", "plan.toml:5: rounds.transport: unknown key");
  expect_error("transport = \"tcp\"\n" + data + "[rounds]\nmax_rounds = 5\n",
               "plan.toml:1: transport: must be one of inproc, grpc");
  expect_error(data, "rounds.max_rounds must be set");
  expect_error(data + "[rounds]\nmax_rounds = 5\ncohort_size = 30\n", "exceeds clinics.count");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[dp]\nclip = \"one\"\n", "plan.toml:6: dp.clip: must be a number");
  expect_error(data + "[rounds\n", "plan.toml:3");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[decision]\ntarget_sensitivity = 2\n",
               "decision.target_sensitivity: must be in");
  expect_error("[data]\npath = \"/x.csv\"\nvalidation_fraction = 0.9\n[rounds]\nmax_rounds = 5\n",
               "data.validation_fraction: must be in");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[secagg]\nenabled = false\n", "need secagg.enabled = true");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[dp]\nmode = \"central\"\n", "set secagg.enabled = false");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[compression]\nkind = \"topk\"\n", "compression.kind needs");
  expect_error(data + "[rounds]\nmax_rounds = 5\n[compression]\nkind = \"zip\"\n",
               "plan.toml:6: compression.kind: must be one of none, int8, topk");
  auto ok = ParseScenario(data + "[rounds]\nmax_rounds = 5\n", "/srv/sims/plan.toml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->data.path, "/x.csv");
  EXPECT_EQ(ok->name, "plan");
}

// Patient-level DP end to end: DP-SGD at every clinic, the PLD accountant
// within the target, a threshold chosen on validation, and each clinic's
// own ledger charged for every round it trained in.
TEST_F(SimulationTest, PatientLevelRoundsAndAThresholdChosenOnValidation) {
  std::string text = kScenario;
  const std::string clinic_dp = "[dp]\nclip = 1.0\nnoise_multiplier = 0.3\n";
  text.replace(text.find(clinic_dp), clinic_dp.size(),
               "[dp]\nunit = \"patient\"\nclip = 1.0\nsampling_rate = 0.5\ntarget_epsilon = 4\n");
  text += "[decision]\npositive_class = \"malignant\"\ntarget_sensitivity = 0.95\n";
  auto scenario = ParseScenario(text, "/tmp/test-bc.toml");
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  auto report = RunSimulation(*scenario, work_ / "patient");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(report->epsilon, 0.5);
  EXPECT_LE(report->epsilon, 4.0);
  EXPECT_GT(report->federated.accuracy, 0.8);
  EXPECT_GT(report->validation_samples, 0u);
  ASSERT_GE(report->positive_class, 0);
  EXPECT_GT(report->threshold, 0.0);
  EXPECT_LE(report->threshold, 0.5);
  const size_t c = static_cast<size_t>(report->positive_class);
  EXPECT_GE(report->federated_at_threshold.sensitivity[c], report->federated.sensitivity[c]);
  // Every clinic's ledger holds the rounds it trained in, within the target.
  int charged = 0;
  for (const auto& clinic : report->clinics) {
    auto ledger =
        dp::PrivacyLedger::Open(work_ / "patient" / clinic.id / "privacy.db", {.epsilon = 1e9, .delta = 1e-5});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    charged += static_cast<int>(ledger->get()->Charges()->size());
    EXPECT_LE(ledger->get()->Spent()->epsilon, 4.0);
  }
  int completed = 0;
  for (const auto& r : report->rounds) completed += r.completed;
  EXPECT_GE(charged, completed * scenario->federation.min_cohort);
}

TEST(ScenarioTest, MissingDataIsNamed) {
  auto s2 = ParseScenario("[data]\npath = \"nope.csv\"\n[rounds]\nmax_rounds = 2\n[clinics]\ncount = 4\n",
                          "/srv/sims/plan.toml");
  ASSERT_TRUE(s2.ok()) << s2.status();
  auto r = RunSimulation(*s2, std::filesystem::temp_directory_path() / "tinyfed-sim-missing");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("data.path"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("/srv/sims/nope.csv"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace tinyfed::sim
