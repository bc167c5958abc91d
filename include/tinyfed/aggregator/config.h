// The aggregator's configuration, read from a TOML file
// (`tinyfed aggregator --config FILE`). Relative paths are relative to the
// file's directory. Every key is optional except the four paths; unknown keys
// and out-of-range values are errors that name the key and its line, so a
// typo never silently falls back to a default. docs/aggregator.md lists the
// keys with an example.
#ifndef TINYFED_AGGREGATOR_CONFIG_H_
#define TINYFED_AGGREGATOR_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/aggregator/server_optimizer.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator {

class TomlTableReader;  // tinyfed/aggregator/toml_reader.h (which brings toml++)

// distributed and local need SecAgg+ (the noise is added by clients and
// summed mod 2^bits); central and off are trusted-aggregator rounds.
enum class DpMode { kDistributed, kLocal, kCentral, kOff };
// What one unit of privacy hides. Clinic: a clinic's whole dataset (the
// mechanisms of dp.mode, noise calibrated to one clinic's update). Patient:
// one patient's record; each clinic runs DP-SGD on its own samples and its
// guarantee holds from its own noise (needs dp.mode = distributed, whose
// SecAgg+ then only hides each clinic's update, adding no noise).
enum class DpUnit { kClinic, kPatient };

struct DpConfig {
  DpMode mode = DpMode::kDistributed;
  DpUnit unit = DpUnit::kClinic;
  double clip = 1.0;  // clinic: of a clinic's update; patient: of one patient's gradient
  // Patient only: each sample joins a DP-SGD step with this probability, and
  // a round takes ceil(training.epochs / sampling_rate) steps.
  double sampling_rate = 0.1;
  // Patient only: the L2 bound a clinic's update is clipped to before
  // encoding for SecAgg+ (post-processing; sets the integer scale).
  double update_clip = 1.0;
  double noise_multiplier = 0.0;  // set this or target_epsilon
  double target_epsilon = 0.0;    // over max_rounds rounds (which must then be set)
  double delta = 1e-5;
  double epsilon_budget = 10.0;  // the ledger refuses rounds past it
  // SecAgg+ sums updates mod 2^bits. 0: the aggregator picks at start the
  // fewest bits whose rounding costs little (aggregator/noise.h).
  int bits = 0;
  double max_wrap_probability = 1e-4;
  // 0, or SecAgg+ updates travel as count sketches of ceil(sketch_fraction *
  // head size) values (dp/count_sketch.h: Chen et al. 2022's linear
  // compression), which the aggregator decodes after summing.
  double sketch_fraction = 0.0;
};

// Transport security, device identity, limits, release metadata.
struct SecurityConfig {
  // PEM files for TLS. Both empty means plaintext, which the aggregator
  // refuses to serve unless started with --insecure (tests only).
  std::filesystem::path tls_certificate;
  std::filesystem::path tls_private_key;
  // Per device; excess gets RESOURCE_EXHAUSTED. At least twice the polling
  // rate plus 600 (ten calls a round, one-second rounds).
  int requests_per_minute = 1200;
  int max_concurrent_calls = 256;  // over every device
  // Open connections at most; the descriptor limit must leave room for them
  // and the aggregator's own files (it raises the soft limit if it can).
  int max_connections = 512;
  // A connection that has carried no authenticated call this long after
  // it was accepted is shut down.
  absl::Duration connection_auth_timeout = absl::Seconds(10);
  absl::Duration max_clock_skew = absl::Minutes(5);  // of a signed request's timestamp
  absl::Duration enrollment_token_lifetime = absl::Hours(72);
  // Release metadata expires this long after signing; the aggregator
  // re-signs it when half of it has passed.
  absl::Duration release_expiry = absl::Hours(24 * 7);
};

// The operator port (operator_server.h): Prometheus metrics and the status
// page, over HTTPS with the aggregator's certificate when security has one.
struct OperatorConfig {
  std::string listen;                // "host:port"; empty: no operator port
  std::filesystem::path token_file;  // the status page's credential; unset: no status page
  // On SIGTERM, health says NOT_SERVING this long before the server stops,
  // so that probes and load balancers move gateways elsewhere first.
  absl::Duration drain_timeout = absl::Seconds(5);
};

// A regional aggregator: its rounds are its clinics' part of the national
// aggregator's rounds. It joins each national round as one participant
// (a device of the national aggregator), runs the regional round under the
// national task's encoding, forwards its clinics' secure sum still encoded,
// and mirrors the national models and roots to its gateways unchanged: it
// holds no publishing key, and its gateways pin the national root.
struct UpstreamConfig {
  std::string address;                   // the national aggregator, "host:port"
  std::filesystem::path ca_certificate;  // PEM of its CA; empty: the system's roots
  std::string device_id;                 // this region's device id there
  // Read at the first start only: enrolls the key the region then keeps in
  // state_dir/upstream/ (`tinyfed enroll --device-id ID` on the national side).
  std::filesystem::path enrollment_token_file;
};

// Canary rollout: each new version goes first to a canary cohort, and
// to everyone else only once the canary's telemetry shows no regression
// against the same gateways' reports on the previous model; otherwise it
// is rolled back as a new, higher version carrying the previous weights.
// Rounds wait meanwhile. Off unless canary_fraction or canary_devices is
// set.
struct RolloutConfig {
  double canary_fraction = 0.0;             // of the devices, drawn afresh for each version
  std::vector<std::string> canary_devices;  // always in the canary
  int canary_reports = 5;                   // canary gateways' reports on the new model needed
  int64_t canary_check_ins = 200;           // by canary gateways; without the reports by then: rolled back
  double max_accuracy_drop = 0.03;          // held-out accuracy, pooled over the canary
  double max_low_confidence_rise = 0.15;    // share of held-out cases answered below 0.5
  int max_refusals = 0;                     // canary gateways that refused the new model
  bool enabled() const { return canary_fraction > 0.0 || !canary_devices.empty(); }
};

struct Config {
  std::string listen = "127.0.0.1:7443";  // port 0 picks a free one
  std::filesystem::path state_dir;
  std::filesystem::path initial_model;   // a bundle file from `tinyfed model quantize`
  std::filesystem::path publishing_key;  // signs releases; listed in the latest root
  std::filesystem::path roots_dir;       // 1.root, 2.root, ... from `tinyfed root new`

  int64_t max_rounds = 0;       // 0: until stopped or out of budget
  int cohort_size = 20;         // clients a round aims to finish with
  int min_cohort = 10;          // fewer survivors abort the round
  double over_selection = 0.0;  // admit cohort_size * (1 + this) to absorb dropouts
  bool reset_head = false;      // start from a zero head instead of the bundle's
  // A national aggregator: its participants are regional aggregators
  // (configured with [upstream]), each forwarding its clinics' secure sum
  // still encoded, and a round expects this many clinics across them (their
  // distributed noise and the sum's range are planned for that many). 0:
  // participants are gateways.
  int national_clinics = 0;
  absl::Duration poll_interval = absl::Milliseconds(500);

  absl::Duration selection_timeout = absl::Seconds(60);
  absl::Duration training_timeout = absl::Seconds(300);
  absl::Duration share_keys_timeout = absl::Seconds(60);
  absl::Duration masked_input_timeout = absl::Seconds(60);
  absl::Duration unmasking_timeout = absl::Seconds(60);

  v1::TrainingSettings training;  // sent to clients with each task
  DpConfig dp;
  bool secure_aggregation = true;
  double max_dropout = 0.2;    // SecAgg+ graph: tolerated dropout fraction
  double max_corrupted = 0.1;  // and corrupted fraction
  // Without SecAgg+ only: how clients compress their update (with error feedback).
  v1::Compression compression = v1::COMPRESSION_NONE;
  double topk_fraction = 0.1;
  ServerOptimizerOptions optimizer;
  SecurityConfig security;
  OperatorConfig operator_port;
  RolloutConfig rollout;
  // Set: this is a regional aggregator. The national task then decides
  // training, DP and encoding; initial_model and publishing_key are not
  // used, and roots_dir holds the national roots.
  std::optional<UpstreamConfig> upstream;

  // Simulation only: derive the round seeds (SecAgg+ graph, rotation, id
  // order) from this, so a simulation repeats exactly. Never in production:
  // a predictable rotation and graph help an attacker.
  std::optional<uint64_t> simulation_seed;
};

// A config with the defaults above and the required paths unset.
Config DefaultConfig();

// INVALID_ARGUMENT "FILE:LINE: key: problem" for syntax errors, unknown keys,
// wrong types and impossible values; NOT_FOUND for a missing file.
absl::StatusOr<Config> ReadConfig(const std::filesystem::path& path);
absl::StatusOr<Config> ParseConfig(std::string_view toml, const std::filesystem::path& source_name);

// Patient unit: the DP-SGD steps one round takes at each clinic.
int64_t PatientStepsPerRound(const Config& config);
// Devices admitted to a round: cohort_size * (1 + over_selection), rounded up.
size_t CohortTarget(const Config& config);
// The clinics whose distributed noise a round of `cohort` participants
// counts on: all but secagg.max_dropout of them, or of national_clinics.
int ExpectedNoisyClinics(const Config& config, int cohort);

// `config` as a TOML file ParseConfig reads back (paths absolute).
std::string FormatConfig(const Config& config);

// The sections [rounds], [deadlines], [training], [dp], [secagg] and
// [optimizer] of `top`, into *config, then the checks across them.
// Simulation scenarios use the same sections.
absl::Status ReadConfigSections(TomlTableReader& top, const std::string& source, Config* config);

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_CONFIG_H_
