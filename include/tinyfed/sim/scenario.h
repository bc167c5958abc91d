// A simulation scenario: which data, how it is split among clinics, how the
// clinics behave, and how they federate. Read from TOML (sim/scenarios/ has
// examples; docs/sim.md lists every key). Errors name the file, line and key.
#ifndef TINYFED_SIM_SCENARIO_H_
#define TINYFED_SIM_SCENARIO_H_

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/client/client.h"
#include "tinyfed/models/dataset.h"

namespace tinyfed::sim {

enum class PartitionKind { kIid, kDirichlet };
enum class FeatureShift { kNone, kBrightness, kGain };
enum class Availability { kAlways, kDiurnal };
// inproc: one process, the engine called directly on a simulated clock.
// grpc: one process, the clients on the aggregator's gRPC server over loopback.
// processes: `tinyfed aggregator` and one `tinyfed client run` per clinic.
enum class TransportKind { kInProcess, kGrpc, kProcesses };

struct DataSpec {
  std::filesystem::path path;    // CSV file, or IDX images (with labels)
  std::filesystem::path labels;  // IDX labels; empty for CSV
  // CSV: how the file is read (label column, delimiter, missing values,
  // ignored columns, image shape; see models::CsvOptions).
  models::CsvOptions csv;
  double test_fraction = 0.2;  // global test set, stratified
  // Of the rest, before the public split: a validation set to choose
  // settings on (clip, learning rates, epochs), never the test set.
  double validation_fraction = 0.1;
  double public_fraction = 0.2;  // of the rest: public data for the backbone
  size_t max_samples = 0;        // 0: all; else a stratified subset first
};

struct BackboneSpec {
  std::filesystem::path bundle;  // a given int8 backbone; else one is trained
  // Or a model exported elsewhere: the graph up to `onnx_embedding`,
  // normalized by the public split, fine-tuned on it for `epochs` (0: as
  // it is), then int8.
  std::filesystem::path onnx;
  std::string onnx_embedding;
  std::string arch = "mlp";            // mlp, cnn or dscnn
  std::vector<int> hidden = {64, 32};  // mlp: hidden, then embedding width
  int epochs = 20;
  int batch_size = 32;
  double learning_rate = 0.05;
};

struct PartitionSpec {
  PartitionKind kind = PartitionKind::kIid;
  double alpha = 0.5;          // Dirichlet concentration
  double quantity_skew = 0.0;  // log-normal sigma of clinic sizes (IID only); 0: equal
  FeatureShift shift = FeatureShift::kNone;
  double shift_strength = 0.0;    // brightness/contrast or gain spread, and sensor noise
  double holdout_fraction = 0.2;  // each clinic's own test slice (personalization)
  size_t min_samples = 10;
};

struct ClinicsSpec {
  int count = 8;
  Availability availability = Availability::kAlways;
  double min_availability = 0.3;  // diurnal: the share online at the quietest hour
  double round_hours = 1.0;       // simulated hours between rounds (diurnal clock)
  // Probability of dropping out in each phase of a round it joined: training
  // (before advertising keys), share_keys, masked_input, unmasking.
  std::array<double, 4> dropout = {0, 0, 0, 0};
  double uplink_kbps = 256;
  double downlink_kbps = 1024;
  double latency_ms = 200;
  double compute_speed = 1.0;  // relative to this machine; 0.25 = four times slower
  // Of each gateway's samples, the share it holds out for its telemetry
  // (held-out accuracy, canary reports, drift), never trained on. 0: none.
  double holdout_fraction = 0.0;
  // Gateways on solar power: this share of the clinics (the first ones)
  // runs on a battery charged by day, lowest at dawn and full in the
  // afternoon (SolarCharge), and every gateway applies `eligibility`.
  double solar_fraction = 0.0;
  client::EligibilityPolicy eligibility;
  // Cases each clinic's clinicians ask its gateway about each round
  // (distinct samples of the clinic's held-out slice, at most all of it,
  // before the round), reported in its telemetry for the aggregator's drift
  // watch. 0: none.
  int cases_per_round = 0;
};

// What goes wrong in a federation, to see that it is caught.
struct FaultsSpec {
  // The cohort of this round trains on its labels shifted by one (class c
  // becomes c + 1): a botched export. 0: none.
  int flipped_labels_round = 0;
  // From this round on, the first `shifted_clinics` clinics' cases come
  // from a new scanner: contrast `shift_scale` around the mean and
  // brightness `shift_offset` standard deviations. 0: none.
  int input_shift_round = 0;
  int shifted_clinics = 0;
  double shift_scale = 0.5;
  double shift_offset = 1.0;
};

// A solar gateway's battery charge at `hour` (0-24) of the day.
double SolarCharge(double hour);

// A decision threshold on one class's probability, chosen on the validation
// split so that class's sensitivity reaches a target (a screening test that
// must not miss the disease).
struct DecisionSpec {
  std::string positive_class;  // a label name; empty: argmax decisions only
  double target_sensitivity = 0.95;
};

// A national federation: the clinics split into `count` regions (clinic i
// of N in region i * count / N), each with a regional aggregator of its own
// that joins the national aggregator's rounds. 0: one flat federation.
struct RegionsSpec {
  int count = 0;
  // A region killed mid-round: region `kill_region` (1-based) stops before
  // its `kill_phase` message of national round `kill_round` (0: none), and
  // takes part again from the next round.
  int kill_round = 0;
  int kill_region = 1;
  v1::Phase kill_phase = v1::PHASE_MASKED_INPUT;
};

struct Scenario {
  std::filesystem::path source;  // the scenario file
  std::string name;
  uint64_t seed = 1;
  TransportKind transport = TransportKind::kInProcess;
  DataSpec data;
  BackboneSpec backbone;
  PartitionSpec partition;
  ClinicsSpec clinics;
  DecisionSpec decision;
  RegionsSpec regions;
  FaultsSpec faults;
  int rounds = 20;
  int baseline_epochs = 20;  // centralized and local-only heads
  int personalization_epochs = 5;
  // What chose the settings (stated in the report), e.g. "a sweep of dp.clip
  // scored on the validation split".
  std::string settings_chosen_by = "the defaults; nothing was tuned";
  // The aggregator's settings (cohort, training, DP, SecAgg+, optimizer);
  // paths and deadlines are filled in by the simulation.
  aggregator::Config federation;
};

absl::StatusOr<Scenario> ReadScenario(const std::filesystem::path& path);
// `text` as if read from `source`; relative data paths resolve against its directory.
absl::StatusOr<Scenario> ParseScenario(std::string_view text, const std::filesystem::path& source);

}  // namespace tinyfed::sim

#endif  // TINYFED_SIM_SCENARIO_H_
