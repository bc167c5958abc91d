// Runs a scenario on the real client and aggregator code and reports what a
// deployment planner needs: accuracy and privacy per round, bytes and time,
// against the centralized and local-only baselines and personalization.
//
//   auto scenario = ReadScenario("sim/scenarios/clinics-breast-cancer.toml");
//   auto report = RunSimulation(*scenario, work_dir, progress);
//   WriteReport(*report, out_dir);   // report.json, rounds.csv, plots, summary.md
//
// inproc: every clinic is a client::Client whose transport calls the round
// engine directly, on a simulated clock (deadlines pass instantly once every
// clinic still in the round has answered), so dropouts cost no real time.
// grpc: the same clients talk to the aggregator's gRPC server over loopback
// with real deadlines. Either way the clients train, encode, mask and
// verify models exactly as gateways do. With the same seed a scenario gives
// the same report (timings aside).
#ifndef TINYFED_SIM_SIMULATION_H_
#define TINYFED_SIM_SIMULATION_H_

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/sim/scenario.h"

namespace tinyfed::sim {

struct Metrics {
  double accuracy = 0.0;
  double loss = 0.0;                // mean cross-entropy
  std::vector<double> sensitivity;  // per class: recall (NaN for a class without samples)
  std::vector<double> specificity;  // per class: true negative rate

  // The mean and the lowest sensitivity over the classes that have samples:
  // what accuracy hides on imbalanced data (a minority class nobody finds).
  double balanced_accuracy() const;
  double worst_sensitivity() const;
};

struct RoundResult {
  int round = 0;
  bool completed = false;
  std::string reason;                // why not, if not
  Metrics test;                      // the model after this round, on the global test set
  double validation_accuracy = 0.0;  // and on the validation set (for choosing settings)
  int available = 0;                 // clinics online this round
  int selected = 0;
  int survivors = 0;
  int dropouts = 0;
  int ineligible = 0;    // online, but declined by their eligibility policy
  double epsilon = 0.0;  // spent so far
  // Mean over clinics that took part: serialized requests and responses,
  // without the polls answered "wait" (a few dozen bytes each).
  double bytes_up_per_client = 0.0;
  double bytes_down_per_client = 0.0;
  // The same upload per coordinate of the head: the encoded update (values
  // and their padding), and everything else the protocol sends (SecAgg+
  // keys, shares and signatures, request headers); and of the download,
  // the bytes of models.
  double update_bits_per_coordinate = 0.0;
  double protocol_bits_per_coordinate = 0.0;
  double model_bytes_down_per_client = 0.0;
  double simulated_seconds = 0.0;  // slowest survivor on its link and CPU, plus deadlines waited
  double wall_seconds = 0.0;
  // [rollout]: what became of this round's model ("promoted", "rolled back
  // as v12", or "in canary" if undecided), the check-in passes of every
  // clinic that took, and the clinics outside the canary that installed it
  // meanwhile (it should be none).
  std::string rollout;
  int canary_passes = 0;
  int installed_outside_canary = 0;
  // Drift flags raised after this round: devices, and the fleet.
  int drift_devices = 0;
  bool drift_fleet = false;
};

// A clinic's heads scored on a split weighted to the clinic's class shares:
// each class's accuracy there, weighted by that class's share of the
// clinic's samples (train and slice). Negative: not measured (clinics whose
// inputs are shifted as well; served: as ClinicResult::served).
struct OnCaseMix {
  double local_only = -1.0;
  double federated = -1.0;
  double served = -1.0;
};

struct ClinicResult {
  std::string id;
  size_t train_samples = 0;
  size_t holdout_samples = 0;
  double local_only = 0.0;    // its own head, on its holdout slice
  double federated = 0.0;     // the final federated head, on its holdout slice
  double personalized = 0.0;  // the federated head fine-tuned on its data
  // What the clinic's gateway serves (Predict) after the last round: its
  // personal head where that won, cross-validated on the gateway's own
  // samples (docs/gateway.md), else the federated head. Negative: not
  // measured (the processes transport).
  double served = -1.0;
  bool served_personal = false;
  double local_only_on_test = 0.0;  // its own head on the global test set
  OnCaseMix test_mix;               // what the slice measures, on the test split's thousands of cases
  OnCaseMix validation_mix;         // the same on the validation split, to choose settings by
};

struct SimulationReport {
  Scenario scenario;
  std::string backbone;  // how it was made
  size_t embedding_size = 0;
  size_t test_samples = 0;
  std::vector<std::string> label_names;
  Metrics initial;      // the starting (zero) head
  Metrics centralized;  // head trained on the union of the clinics' data
  Metrics federated;    // after the last round
  // On the validation split (data.validation_fraction), to choose settings by.
  size_t validation_samples = 0;
  Metrics centralized_validation;
  Metrics federated_validation;
  // scenario.decision: the federated head deciding by a threshold on the
  // positive class's probability, chosen on the validation split.
  int positive_class = -1;  // -1: no decision threshold
  double threshold = 0.0;
  Metrics federated_at_threshold;  // on the test split
  double mean_local_only_on_test = 0.0;
  std::vector<ClinicResult> clinics;
  std::vector<RoundResult> rounds;
  double epsilon = 0.0;
  double delta = 0.0;
  double noise_multiplier = 0.0;  // z in use (chosen from a target epsilon if set)
  int bits = 0;                   // SecAgg+ bits in use (chosen if dp.bits = 0); 0 without SecAgg+
  double wall_seconds = 0.0;
  double client_rounds_per_second = 0.0;  // participations over the federated wall time
  // The processes transport: each gateway process's peak resident memory
  // over the whole run, in bytes (empty with the other transports).
  std::vector<uint64_t> gateway_peak_rss_bytes;
};

using Progress = std::function<void(const RoundResult& round, int total_rounds, absl::Duration eta)>;

// `work_dir` holds the clinics' stores and the aggregator's state; it is
// created and may be removed afterwards.
// The processes transport runs `tinyfed_binary` (the `tinyfed` command).
absl::StatusOr<SimulationReport> RunSimulation(const Scenario& scenario, const std::filesystem::path& work_dir,
                                               const Progress& progress = {},
                                               const std::filesystem::path& tinyfed_binary = {});

// What a scenario's federation looks like before it runs: the clinics'
// training-set sizes after the splits and the partition, and the head's
// shape. Reads the data; trains nothing.
struct FederationShape {
  std::vector<size_t> clinic_train_sizes;
  size_t embedding_size = 0;
  size_t classes = 0;
};
absl::StatusOr<FederationShape> DescribeFederation(const Scenario& scenario);

// report.json, rounds.csv, summary.md, and accuracy.svg/png,
// bytes.svg/png, clinics.svg/png when gnuplot is installed.
absl::Status WriteReport(const SimulationReport& report, const std::filesystem::path& out_dir);

}  // namespace tinyfed::sim

#endif  // TINYFED_SIM_SIMULATION_H_
