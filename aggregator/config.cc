#include "tinyfed/aggregator/config.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tinyfed/aggregator/toml_reader.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/proto/device_id.h"

namespace tinyfed::aggregator {
namespace {

constexpr int kCallsPerRound = 10;

// A regional aggregator (regional = true) publishes nothing of its own: it
// needs neither a model nor a publishing key.
absl::Status ReadTop(TomlTableReader& r, const std::filesystem::path& base, bool regional, Config& c) {
  std::string state_dir, model, key, roots;
  TINYFED_RETURN_IF_ERROR(r.String("listen", &c.listen));
  TINYFED_RETURN_IF_ERROR(r.String("state_dir", &state_dir));
  TINYFED_RETURN_IF_ERROR(r.String("initial_model", &model));
  TINYFED_RETURN_IF_ERROR(r.String("publishing_key", &key));
  TINYFED_RETURN_IF_ERROR(r.String("roots_dir", &roots));
  for (auto [name, value, out, needed] : {std::tuple{"state_dir", &state_dir, &c.state_dir, true},
                                          std::tuple{"initial_model", &model, &c.initial_model, !regional},
                                          std::tuple{"publishing_key", &key, &c.publishing_key, !regional},
                                          std::tuple{"roots_dir", &roots, &c.roots_dir, true}}) {
    if (value->empty() && needed) {
      return absl::InvalidArgumentError(absl::StrCat("missing required key '", name, "'"));
    }
    if (!value->empty() && !needed) {
      return r.Error(absl::StrCat(name,
                                  " is not used by a regional aggregator ([upstream]): models come signed "
                                  "from the national aggregator"));
    }
    if (!value->empty()) *out = base / *value;
  }
  return absl::OkStatus();
}

absl::Status ReadUpstream(TomlTableReader& r, const std::filesystem::path& base, UpstreamConfig& u) {
  std::string ca, token;
  TINYFED_RETURN_IF_ERROR(r.String("address", &u.address));
  TINYFED_RETURN_IF_ERROR(r.String("ca_certificate", &ca));
  TINYFED_RETURN_IF_ERROR(r.String("device_id", &u.device_id));
  TINYFED_RETURN_IF_ERROR(r.String("enrollment_token_file", &token));
  if (u.address.empty()) return r.Error("address (the national aggregator's host:port) is required");
  if (!proto::IsValidDeviceId(u.device_id)) {
    return r.Error(absl::StrCat("device_id must be 1 to ", proto::kMaxDeviceIdLength,
                                " letters, digits, '.', '_' or '-': this region's id at the national aggregator"));
  }
  if (!ca.empty()) u.ca_certificate = base / ca;
  if (!token.empty()) u.enrollment_token_file = base / token;
  return absl::OkStatus();
}

absl::Status ReadRounds(TomlTableReader& r, Config& c) {
  TINYFED_RETURN_IF_ERROR(r.Integer("max_rounds", &c.max_rounds, 0, int64_t{1} << 40));
  TINYFED_RETURN_IF_ERROR(r.Integer("cohort_size", &c.cohort_size, 2, 100000));
  TINYFED_RETURN_IF_ERROR(r.Integer("min_cohort", &c.min_cohort, 2, 100000));
  TINYFED_RETURN_IF_ERROR(r.Double("over_selection", &c.over_selection, 0.0, 4.0));
  TINYFED_RETURN_IF_ERROR(r.Bool("reset_head", &c.reset_head));
  TINYFED_RETURN_IF_ERROR(r.Integer("national_clinics", &c.national_clinics, 0, 10000000));
  double poll_ms = absl::ToDoubleMilliseconds(c.poll_interval);
  TINYFED_RETURN_IF_ERROR(r.Double("poll_interval_ms", &poll_ms, 10, 60000));
  c.poll_interval = absl::Milliseconds(poll_ms);
  return absl::OkStatus();
}

absl::Status ReadDeadlines(TomlTableReader& r, Config& c) {
  TINYFED_RETURN_IF_ERROR(r.Seconds("selection", &c.selection_timeout, 0.1, 86400));
  TINYFED_RETURN_IF_ERROR(r.Seconds("training", &c.training_timeout, 0.1, 86400));
  TINYFED_RETURN_IF_ERROR(r.Seconds("share_keys", &c.share_keys_timeout, 0.1, 86400));
  TINYFED_RETURN_IF_ERROR(r.Seconds("masked_input", &c.masked_input_timeout, 0.1, 86400));
  return r.Seconds("unmasking", &c.unmasking_timeout, 0.1, 86400);
}

absl::Status ReadTraining(TomlTableReader& r, Config& c) {
  auto& t = c.training;
  uint32_t epochs = t.epochs(), batch = t.batch_size();
  double lr = t.learning_rate(), momentum = t.momentum(), decay = t.weight_decay();
  TINYFED_RETURN_IF_ERROR(r.Integer("epochs", &epochs, 1, 1000));
  TINYFED_RETURN_IF_ERROR(r.Integer("batch_size", &batch, 1, 65536));
  TINYFED_RETURN_IF_ERROR(r.Double("learning_rate", &lr, 1e-9, 100));
  TINYFED_RETURN_IF_ERROR(r.Double("momentum", &momentum, 0, 0.999));
  TINYFED_RETURN_IF_ERROR(r.Double("weight_decay", &decay, 0, 1));
  t.set_epochs(epochs);
  t.set_batch_size(batch);
  t.set_learning_rate(static_cast<float>(lr));
  t.set_momentum(static_cast<float>(momentum));
  t.set_weight_decay(static_cast<float>(decay));
  std::vector<double> weights(t.class_weights().begin(), t.class_weights().end());
  TINYFED_RETURN_IF_ERROR(r.Doubles("class_weights", &weights, 1e-6, 1e6));
  t.clear_class_weights();
  for (double w : weights) t.add_class_weights(static_cast<float>(w));
  return absl::OkStatus();
}

absl::Status ReadDp(TomlTableReader& r, Config& c) {
  auto& d = c.dp;
  int mode = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("mode", {"distributed", "local", "central", "off"}, &mode));
  d.mode = static_cast<DpMode>(mode);
  int unit = static_cast<int>(d.unit);
  TINYFED_RETURN_IF_ERROR(r.Choice("unit", {"clinic", "patient"}, &unit));
  d.unit = static_cast<DpUnit>(unit);
  TINYFED_RETURN_IF_ERROR(r.Double("clip", &d.clip, 1e-9, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Double("sampling_rate", &d.sampling_rate, 1e-6, 1.0));
  TINYFED_RETURN_IF_ERROR(r.Double("update_clip", &d.update_clip, 1e-9, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Double("noise_multiplier", &d.noise_multiplier, 0, 1e4));
  TINYFED_RETURN_IF_ERROR(r.Double("target_epsilon", &d.target_epsilon, 0, 1e4));
  TINYFED_RETURN_IF_ERROR(r.Double("delta", &d.delta, 1e-300, 0.999999));
  TINYFED_RETURN_IF_ERROR(r.Double("epsilon_budget", &d.epsilon_budget, 1e-9, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Integer("bits", &d.bits, 0, 32));
  if (d.bits == 1) return absl::InvalidArgumentError("dp.bits must be 0 (chosen at start) or in [2, 32], got 1");
  TINYFED_RETURN_IF_ERROR(r.Double("sketch_fraction", &d.sketch_fraction, 0.0, 1.0));
  return r.Double("max_wrap_probability", &d.max_wrap_probability, 1e-300, 0.5);
}

absl::Status ReadSecAgg(TomlTableReader& r, Config& c) {
  TINYFED_RETURN_IF_ERROR(r.Bool("enabled", &c.secure_aggregation));
  TINYFED_RETURN_IF_ERROR(r.Double("max_dropout", &c.max_dropout, 0.0, 0.9));
  return r.Double("max_corrupted", &c.max_corrupted, 0.0, 0.9);
}

absl::Status ReadCompression(TomlTableReader& r, Config& c) {
  int kind = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("kind", {"none", "int8", "topk"}, &kind));
  c.compression = static_cast<v1::Compression>(kind);
  return r.Double("topk_fraction", &c.topk_fraction, 1e-6, 1.0);
}

absl::Status ReadOptimizer(TomlTableReader& r, Config& c) {
  int kind = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("kind", {"fedavg", "fedavgm", "fedadam", "fedyogi"}, &kind));
  c.optimizer.kind = static_cast<ServerOptimizerKind>(kind);
  TINYFED_RETURN_IF_ERROR(r.Double("learning_rate", &c.optimizer.learning_rate, 1e-9, 1e3));
  TINYFED_RETURN_IF_ERROR(r.Double("beta1", &c.optimizer.beta1, 0, 0.999999));
  TINYFED_RETURN_IF_ERROR(r.Double("beta2", &c.optimizer.beta2, 0, 0.999999));
  return r.Double("tau", &c.optimizer.tau, 1e-12, 1e3);
}

absl::Status ReadSecurity(TomlTableReader& r, const std::filesystem::path& base, SecurityConfig& s) {
  std::string certificate, key;
  TINYFED_RETURN_IF_ERROR(r.String("tls_certificate", &certificate));
  TINYFED_RETURN_IF_ERROR(r.String("tls_private_key", &key));
  if (certificate.empty() != key.empty()) {
    return r.Error("tls_certificate and tls_private_key go together: set both or neither");
  }
  if (!certificate.empty()) {
    s.tls_certificate = base / certificate;
    s.tls_private_key = base / key;
  }
  TINYFED_RETURN_IF_ERROR(r.Integer("requests_per_minute", &s.requests_per_minute, 1, 1000000));
  TINYFED_RETURN_IF_ERROR(r.Integer("max_concurrent_calls", &s.max_concurrent_calls, 1, 100000));
  TINYFED_RETURN_IF_ERROR(r.Integer("max_connections", &s.max_connections, 1, 1000000));
  TINYFED_RETURN_IF_ERROR(r.Seconds("connection_auth_timeout", &s.connection_auth_timeout, 1, 3600));
  TINYFED_RETURN_IF_ERROR(r.Seconds("max_clock_skew", &s.max_clock_skew, 1, 86400));
  double hours = absl::ToDoubleHours(s.enrollment_token_lifetime);
  TINYFED_RETURN_IF_ERROR(r.Double("enrollment_token_hours", &hours, 0.01, 24 * 365));
  s.enrollment_token_lifetime = absl::Hours(hours);
  hours = absl::ToDoubleHours(s.release_expiry);
  TINYFED_RETURN_IF_ERROR(r.Double("release_expiry_hours", &hours, 0.01, 24 * 3650));
  s.release_expiry = absl::Hours(hours);
  return absl::OkStatus();
}

absl::Status CheckConsistency(const Config& c, const std::string& source) {
  auto error = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(source, ": ", what)); };
  if (c.min_cohort > c.cohort_size) {
    return error(
        absl::StrCat("rounds.min_cohort (", c.min_cohort, ") exceeds rounds.cohort_size (", c.cohort_size, ")"));
  }
  if (c.secure_aggregation && c.cohort_size < 3) {
    return error(absl::StrCat("rounds.cohort_size (", c.cohort_size,
                              ") is below 3, the fewest clients SecAgg+ can run a round with"));
  }
  const bool client_noise = c.dp.mode == DpMode::kDistributed || c.dp.mode == DpMode::kLocal;
  if (client_noise && !c.secure_aggregation) {
    return error("dp.mode distributed and local need secagg.enabled = true (the noise is summed mod 2^bits)");
  }
  if (!client_noise && c.secure_aggregation) {
    return error("dp.mode central and off are trusted-aggregator rounds: set secagg.enabled = false");
  }
  if (c.national_clinics > 0 && !c.secure_aggregation) {
    return error(
        "rounds.national_clinics needs SecAgg+: regions forward their sums encoded, and only SecAgg+ adds them");
  }
  if (c.national_clinics > 0 && c.national_clinics < c.cohort_size) {
    return error(absl::StrCat("rounds.national_clinics (", c.national_clinics, ") is below rounds.cohort_size (",
                              c.cohort_size, "): each region forwards at least one clinic"));
  }
  if (c.dp.sketch_fraction > 0 && !c.secure_aggregation) {
    return error("dp.sketch_fraction compresses SecAgg+ encodings: it needs secagg.enabled = true");
  }
  if (c.compression != v1::COMPRESSION_NONE && c.secure_aggregation) {
    return error("compression.kind needs secagg.enabled = false (SecAgg+ sums fixed-width integers)");
  }
  if (c.training.class_weights_size() > 0 && (c.dp.unit != DpUnit::kPatient || c.dp.mode == DpMode::kOff)) {
    return error("training.class_weights apply to patient-level DP-SGD only (dp.unit = \"patient\")");
  }
  if (c.dp.mode == DpMode::kOff) return absl::OkStatus();
  if (c.dp.unit == DpUnit::kPatient && c.dp.mode != DpMode::kDistributed) {
    return error(
        "dp.unit = \"patient\" needs dp.mode = \"distributed\": the clinics add the noise (DP-SGD) and "
        "SecAgg+ hides each clinic's update");
  }
  if (c.dp.unit == DpUnit::kPatient && c.dp.noise_multiplier > 0 && c.dp.noise_multiplier < 0.05) {
    return error("dp.noise_multiplier must be at least 0.05 at the patient level");
  }
  if ((c.dp.noise_multiplier > 0) == (c.dp.target_epsilon > 0)) {
    return error("set exactly one of dp.noise_multiplier and dp.target_epsilon");
  }
  if (c.dp.target_epsilon > 0 && c.max_rounds == 0) {
    return error("dp.target_epsilon needs rounds.max_rounds: the target is spread over a known number of rounds");
  }
  return absl::OkStatus();
}

absl::Status ReadOperator(TomlTableReader& r, const std::filesystem::path& base, OperatorConfig& o) {
  std::string token_file;
  TINYFED_RETURN_IF_ERROR(r.String("listen", &o.listen));
  TINYFED_RETURN_IF_ERROR(r.String("token_file", &token_file));
  TINYFED_RETURN_IF_ERROR(r.Seconds("drain_timeout", &o.drain_timeout, 0, 3600));
  if (!token_file.empty()) o.token_file = base / token_file;
  return absl::OkStatus();
}

absl::Status ReadRollout(TomlTableReader& r, Config& c) {
  RolloutConfig& o = c.rollout;
  TINYFED_RETURN_IF_ERROR(r.Double("canary_fraction", &o.canary_fraction, 0.0, 0.5));
  TINYFED_RETURN_IF_ERROR(r.Strings("canary_devices", &o.canary_devices));
  TINYFED_RETURN_IF_ERROR(r.Integer("canary_reports", &o.canary_reports, 1, 10000));
  TINYFED_RETURN_IF_ERROR(r.Integer("canary_check_ins", &o.canary_check_ins, 1, int64_t{1} << 40));
  TINYFED_RETURN_IF_ERROR(r.Double("max_accuracy_drop", &o.max_accuracy_drop, 0.0, 1.0));
  TINYFED_RETURN_IF_ERROR(r.Double("max_low_confidence_rise", &o.max_low_confidence_rise, 0.0, 1.0));
  TINYFED_RETURN_IF_ERROR(r.Integer("max_refusals", &o.max_refusals, 0, 10000));
  for (const std::string& device : o.canary_devices) {
    if (!proto::IsValidDeviceId(device)) {
      return r.Error(absl::StrCat("canary_devices: '", device, "' is not a device id (1 to 64 of [A-Za-z0-9._-])"));
    }
  }
  return absl::OkStatus();
}

// The file is read relative to its own directory: relative paths would be
// taken twice.
std::string Absolute(const std::filesystem::path& p) { return std::filesystem::absolute(p).string(); }

}  // namespace

absl::Status ReadConfigSections(TomlTableReader& top, const std::string& source, Config* c) {
  using Section = absl::Status (*)(TomlTableReader&, Config&);
  const std::pair<const char*, Section> sections[] = {
      {"rounds", ReadRounds}, {"deadlines", ReadDeadlines}, {"training", ReadTraining},       {"dp", ReadDp},
      {"secagg", ReadSecAgg}, {"optimizer", ReadOptimizer}, {"compression", ReadCompression}, {"rollout", ReadRollout},
  };
  for (const auto& [name, read] : sections) {
    auto table = top.Table(name);
    if (!table.ok()) return table.status();
    if (*table == nullptr) continue;
    if (std::string_view(name) == "dp" &&
        ((*table)->contains("noise_multiplier") || (*table)->contains("target_epsilon"))) {
      c->dp.noise_multiplier = 0.0;  // the file's choice replaces the default
    }
    TomlTableReader reader(**table, name, source);
    TINYFED_RETURN_IF_ERROR(read(reader, *c));
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  return CheckConsistency(*c, source);
}

int ExpectedNoisyClinics(const Config& c, int cohort) {
  const int clinics = c.national_clinics > 0 ? c.national_clinics : cohort;
  return std::max(1, static_cast<int>(clinics * (1.0 - c.max_dropout)));
}

int64_t PatientStepsPerRound(const Config& c) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(c.training.epochs() / c.dp.sampling_rate - 1e-9)));
}

Config DefaultConfig() {
  Config c;
  c.training.set_epochs(5);
  c.training.set_batch_size(32);
  c.training.set_learning_rate(0.05f);
  c.training.set_momentum(0.9f);
  c.training.set_weight_decay(0.0f);
  c.dp.noise_multiplier = 1.0;
  return c;
}

absl::StatusOr<Config> ParseConfig(std::string_view text, const std::filesystem::path& source_name) {
  const std::string source = source_name.string();
  auto parsed = ParseToml(text, source);
  if (!parsed.ok()) return parsed.status();
  const toml::table& root = *parsed;
  Config c = DefaultConfig();
  TomlTableReader top(root, "", source);
  auto upstream = top.Table("upstream");
  if (!upstream.ok()) return upstream.status();
  if (*upstream != nullptr) {
    TomlTableReader reader(**upstream, "upstream", source);
    TINYFED_RETURN_IF_ERROR(ReadUpstream(reader, source_name.parent_path(), c.upstream.emplace()));
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  TINYFED_RETURN_IF_ERROR(ReadTop(top, source_name.parent_path(), c.upstream.has_value(), c));
  TINYFED_RETURN_IF_ERROR(ReadConfigSections(top, source, &c));
  if ((c.upstream || c.national_clinics > 0) && c.rollout.enabled()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": [rollout] is for a federation of gateways: a region mirrors the national models, and a "
                     "national aggregator's participants are regions"));
  }
  if (c.upstream && (c.national_clinics > 0 || !c.secure_aggregation)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": a regional aggregator ([upstream]) runs SecAgg+ rounds of gateways: it needs secagg.enabled = "
                     "true and no rounds.national_clinics"));
  }
  auto security = top.Table("security");
  if (!security.ok()) return security.status();
  if (*security != nullptr) {
    TomlTableReader reader(**security, "security", source);
    TINYFED_RETURN_IF_ERROR(ReadSecurity(reader, source_name.parent_path(), c.security));
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  auto operator_port = top.Table("operator");
  if (!operator_port.ok()) return operator_port.status();
  if (*operator_port != nullptr) {
    TomlTableReader reader(**operator_port, "operator", source);
    TINYFED_RETURN_IF_ERROR(ReadOperator(reader, source_name.parent_path(), c.operator_port));
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  // Honest clients poll at most once a poll_interval, and make about ten
  // other calls a round (check-in, downloads, four submissions, telemetry):
  // room for twice the polls and one-second rounds.
  const double polls_per_minute = 60000.0 / absl::ToDoubleMilliseconds(c.poll_interval);
  const double needed = 2 * polls_per_minute + kCallsPerRound * 60;
  if (c.security.requests_per_minute < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": security.requests_per_minute (", c.security.requests_per_minute, ") is below ", needed,
                     ": twice the rate clients poll at (", polls_per_minute,
                     " a minute at rounds.poll_interval_ms = ", absl::ToDoubleMilliseconds(c.poll_interval), ") plus ",
                     kCallsPerRound, " calls a round for one-second rounds"));
  }
  auto testing = top.Table("testing");
  if (!testing.ok()) return testing.status();
  if (*testing != nullptr) {
    TomlTableReader reader(**testing, "testing", source);
    int64_t seed = -1;
    TINYFED_RETURN_IF_ERROR(reader.Integer("simulation_seed", &seed, 0, INT64_MAX));
    if (seed >= 0) c.simulation_seed = static_cast<uint64_t>(seed);
    TINYFED_RETURN_IF_ERROR(reader.RejectUnknown());
  }
  TINYFED_RETURN_IF_ERROR(top.RejectUnknown());
  return c;
}

std::string FormatConfig(const Config& c) {
  const char* modes[] = {"distributed", "local", "central", "off"};
  const char* compressions[] = {"none", "int8", "topk"};
  const char* optimizers[] = {"fedavg", "fedavgm", "fedadam", "fedyogi"};
  auto seconds = [](absl::Duration d) { return absl::ToDoubleSeconds(d); };
  const auto& t = c.training;
  std::string out = absl::StrFormat(
      "listen = \"%s\"\nstate_dir = \"%s\"\n%sroots_dir = \"%s\"\n\n"
      "[rounds]\nmax_rounds = %d\ncohort_size = %d\nmin_cohort = %d\nover_selection = %.17g\n"
      "reset_head = %s\nnational_clinics = %d\npoll_interval_ms = %.17g\n\n"
      "[deadlines]\nselection = %.17g\ntraining = %.17g\nshare_keys = %.17g\nmasked_input = %.17g\n"
      "unmasking = %.17g\n\n"
      "[training]\nepochs = %d\nbatch_size = %d\nlearning_rate = %.9g\nmomentum = %.9g\nweight_decay = %.9g\n"
      "class_weights = [%s]\n\n"
      "[dp]\nmode = \"%s\"\nunit = \"%s\"\nclip = %.17g\nsampling_rate = %.17g\nupdate_clip = %.17g\n%s = %.17g\n"
      "delta = %.17g\nepsilon_budget = %.17g\nbits = %d\nmax_wrap_probability = %.17g\nsketch_fraction = %.17g\n\n"
      "[secagg]\nenabled = %s\nmax_dropout = %.17g\nmax_corrupted = %.17g\n\n"
      "[compression]\nkind = \"%s\"\ntopk_fraction = %.17g\n\n"
      "[optimizer]\nkind = \"%s\"\nlearning_rate = %.17g\nbeta1 = %.17g\nbeta2 = %.17g\ntau = %.17g\n",
      c.listen, Absolute(c.state_dir),
      c.upstream ? ""
                 : absl::StrCat("initial_model = \"", Absolute(c.initial_model), "\"\npublishing_key = \"",
                                Absolute(c.publishing_key), "\"\n"),
      Absolute(c.roots_dir), c.max_rounds, c.cohort_size, c.min_cohort, c.over_selection,
      c.reset_head ? "true" : "false", c.national_clinics, absl::ToDoubleMilliseconds(c.poll_interval),
      seconds(c.selection_timeout), seconds(c.training_timeout), seconds(c.share_keys_timeout),
      seconds(c.masked_input_timeout), seconds(c.unmasking_timeout), t.epochs(), t.batch_size(), t.learning_rate(),
      t.momentum(), t.weight_decay(),
      absl::StrJoin(t.class_weights(), ", ",
                    [](std::string* text, float w) { absl::StrAppendFormat(text, "%.9g", w); }),
      modes[static_cast<int>(c.dp.mode)], c.dp.unit == DpUnit::kPatient ? "patient" : "clinic", c.dp.clip,
      c.dp.sampling_rate, c.dp.update_clip, c.dp.target_epsilon > 0 ? "target_epsilon" : "noise_multiplier",
      c.dp.target_epsilon > 0 ? c.dp.target_epsilon : std::max(c.dp.noise_multiplier, 1e-300), c.dp.delta,
      c.dp.epsilon_budget, c.dp.bits, c.dp.max_wrap_probability, c.dp.sketch_fraction,
      c.secure_aggregation ? "true" : "false", c.max_dropout, c.max_corrupted,
      compressions[static_cast<int>(c.compression)], c.topk_fraction, optimizers[static_cast<int>(c.optimizer.kind)],
      c.optimizer.learning_rate, c.optimizer.beta1, c.optimizer.beta2, c.optimizer.tau);
  const SecurityConfig& s = c.security;
  absl::StrAppend(&out, "\n[security]\n");
  if (!s.tls_certificate.empty()) {
    absl::StrAppend(&out, "tls_certificate = \"", Absolute(s.tls_certificate), "\"\ntls_private_key = \"",
                    Absolute(s.tls_private_key), "\"\n");
  }
  absl::StrAppend(
      &out, absl::StrFormat("requests_per_minute = %d\nmax_concurrent_calls = %d\nmax_connections = %d\n"
                            "connection_auth_timeout = %.17g\nmax_clock_skew = %.17g\n"
                            "enrollment_token_hours = %.17g\nrelease_expiry_hours = %.17g\n",
                            s.requests_per_minute, s.max_concurrent_calls, s.max_connections,
                            absl::ToDoubleSeconds(s.connection_auth_timeout), absl::ToDoubleSeconds(s.max_clock_skew),
                            absl::ToDoubleHours(s.enrollment_token_lifetime), absl::ToDoubleHours(s.release_expiry)));
  const OperatorConfig& o = c.operator_port;
  absl::StrAppend(&out, "\n[operator]\n");
  if (!o.listen.empty()) absl::StrAppend(&out, "listen = \"", o.listen, "\"\n");
  if (!o.token_file.empty()) absl::StrAppend(&out, "token_file = \"", Absolute(o.token_file), "\"\n");
  absl::StrAppend(&out, absl::StrFormat("drain_timeout = %.17g\n", absl::ToDoubleSeconds(o.drain_timeout)));
  const RolloutConfig& r = c.rollout;
  absl::StrAppend(
      &out, absl::StrFormat(
                "\n[rollout]\ncanary_fraction = %.17g\ncanary_devices = [%s]\n"
                "canary_reports = %d\ncanary_check_ins = %d\nmax_accuracy_drop = %.17g\n"
                "max_low_confidence_rise = %.17g\nmax_refusals = %d\n",
                r.canary_fraction,
                absl::StrJoin(r.canary_devices, ", ",
                              [](std::string* text, const std::string& d) { absl::StrAppend(text, "\"", d, "\""); }),
                r.canary_reports, r.canary_check_ins, r.max_accuracy_drop, r.max_low_confidence_rise, r.max_refusals));
  if (c.upstream) {
    const UpstreamConfig& u = *c.upstream;
    absl::StrAppend(&out, "\n[upstream]\naddress = \"", u.address, "\"\ndevice_id = \"", u.device_id, "\"\n");
    if (!u.ca_certificate.empty()) absl::StrAppend(&out, "ca_certificate = \"", Absolute(u.ca_certificate), "\"\n");
    if (!u.enrollment_token_file.empty()) {
      absl::StrAppend(&out, "enrollment_token_file = \"", Absolute(u.enrollment_token_file), "\"\n");
    }
  }
  if (c.simulation_seed) {
    absl::StrAppend(&out, "\n[testing]\n");
    if (c.simulation_seed) absl::StrAppend(&out, "simulation_seed = ", *c.simulation_seed, "\n");
  }
  return out;
}

absl::StatusOr<Config> ReadConfig(const std::filesystem::path& path) {
  auto text = base::ReadFileBytes(path, 1 << 20);
  if (!text.ok()) return text.status();
  return ParseConfig(*text, path);
}

size_t CohortTarget(const Config& config) {
  return static_cast<size_t>(std::ceil(config.cohort_size * (1.0 + config.over_selection)));
}

}  // namespace tinyfed::aggregator
