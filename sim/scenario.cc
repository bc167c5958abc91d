#include "tinyfed/sim/scenario.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>

#include "absl/strings/str_cat.h"
#include "tinyfed/aggregator/toml_reader.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::sim {
namespace {

using aggregator::TomlTableReader;

// A path relative to the scenario file; "$TINYFED_DATA_DIR/..." and
// absolute paths are kept as given (the former expanded from the
// environment, default .cache/data under the current directory).
std::filesystem::path ResolvePath(const std::string& value, const std::filesystem::path& base) {
  constexpr std::string_view kDataDir = "$TINYFED_DATA_DIR";
  if (value.rfind(kDataDir, 0) == 0) {
    const char* env = std::getenv("TINYFED_DATA_DIR");
    const std::filesystem::path dir = env != nullptr ? env : ".cache/data";
    return dir / value.substr(kDataDir.size() + (value.size() > kDataDir.size() && value[kDataDir.size()] == '/'));
  }
  const std::filesystem::path p = value;
  return p.is_absolute() ? p : base / p;
}

// The [data] keys of a CSV file, named as CsvOptions names them.
absl::Status ReadCsvOptions(TomlTableReader& r, models::CsvOptions& csv) {
  TINYFED_RETURN_IF_ERROR(r.String("label_column", &csv.label_column));
  TINYFED_RETURN_IF_ERROR(r.Integer("classes", &csv.num_classes, 1, models::kMaxClasses));
  TINYFED_RETURN_IF_ERROR(r.Bool("labels_as_names", &csv.labels_as_names));
  int delimiter = -1;
  TINYFED_RETURN_IF_ERROR(r.Choice("delimiter", {",", ";", "tab", "|"}, &delimiter));
  if (delimiter >= 0) csv.delimiter = std::string(",;\t|")[static_cast<size_t>(delimiter)];
  int missing = static_cast<int>(csv.missing);
  TINYFED_RETURN_IF_ERROR(r.Choice("missing", {"error", "drop", "mean"}, &missing));
  csv.missing = static_cast<models::MissingValues>(missing);
  TINYFED_RETURN_IF_ERROR(r.Strings("ignore_columns", &csv.ignore_columns));
  std::vector<int64_t> shape;
  TINYFED_RETURN_IF_ERROR(r.Integers("shape", &shape, 1, 65535));
  if (!shape.empty() && shape.size() != 3) return r.Error("shape must be [height, width, channels]");
  csv.shape.assign(shape.begin(), shape.end());
  return absl::OkStatus();
}

absl::Status ReadData(TomlTableReader& r, const std::filesystem::path& base, DataSpec& d) {
  std::string path, labels;
  TINYFED_RETURN_IF_ERROR(r.String("path", &path));
  if (path.empty()) return r.Error("missing required key 'path'");
  d.path = ResolvePath(path, base);
  TINYFED_RETURN_IF_ERROR(r.String("labels", &labels));
  if (!labels.empty()) d.labels = ResolvePath(labels, base);
  TINYFED_RETURN_IF_ERROR(ReadCsvOptions(r, d.csv));
  TINYFED_RETURN_IF_ERROR(r.Double("test_fraction", &d.test_fraction, 0.01, 0.9));
  TINYFED_RETURN_IF_ERROR(r.Double("validation_fraction", &d.validation_fraction, 0.0, 0.5));
  TINYFED_RETURN_IF_ERROR(r.Double("public_fraction", &d.public_fraction, 0.0, 0.9));
  return r.Integer("max_samples", &d.max_samples, 0, int64_t{1} << 32);
}

absl::Status ReadBackbone(TomlTableReader& r, const std::filesystem::path& base, BackboneSpec& b) {
  std::string bundle;
  TINYFED_RETURN_IF_ERROR(r.String("bundle", &bundle));
  if (!bundle.empty()) b.bundle = ResolvePath(bundle, base);
  std::string onnx;
  TINYFED_RETURN_IF_ERROR(r.String("onnx", &onnx));
  if (!onnx.empty()) b.onnx = ResolvePath(onnx, base);
  TINYFED_RETURN_IF_ERROR(r.String("onnx_embedding", &b.onnx_embedding));
  if (b.onnx.empty() != b.onnx_embedding.empty()) {
    return r.Error("onnx and onnx_embedding go together (the file, and the tensor the head reads)");
  }
  if (!b.onnx.empty() && !b.bundle.empty()) return r.Error("give bundle or onnx, not both");
  int arch = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("arch", {"mlp", "cnn", "dscnn"}, &arch));
  b.arch = std::vector<std::string>{"mlp", "cnn", "dscnn"}[static_cast<size_t>(arch)];
  TINYFED_RETURN_IF_ERROR(r.Integer("epochs", &b.epochs, 0, 1000));
  TINYFED_RETURN_IF_ERROR(r.Integer("batch_size", &b.batch_size, 1, 65536));
  TINYFED_RETURN_IF_ERROR(r.Double("learning_rate", &b.learning_rate, 1e-9, 10));
  int64_t embedding = b.hidden.back(), first = b.hidden.front();
  TINYFED_RETURN_IF_ERROR(r.Integer("hidden", &first, 1, 4096));
  TINYFED_RETURN_IF_ERROR(r.Integer("embedding", &embedding, 1, 4096));
  b.hidden = {static_cast<int>(first), static_cast<int>(embedding)};
  return absl::OkStatus();
}

absl::Status ReadPartition(TomlTableReader& r, PartitionSpec& p) {
  int kind = 0, shift = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("kind", {"iid", "dirichlet"}, &kind));
  p.kind = static_cast<PartitionKind>(kind);
  TINYFED_RETURN_IF_ERROR(r.Double("alpha", &p.alpha, 1e-3, 1e6));
  TINYFED_RETURN_IF_ERROR(r.Double("quantity_skew", &p.quantity_skew, 0.0, 5.0));
  TINYFED_RETURN_IF_ERROR(r.Choice("shift", {"none", "brightness", "gain"}, &shift));
  p.shift = static_cast<FeatureShift>(shift);
  TINYFED_RETURN_IF_ERROR(r.Double("shift_strength", &p.shift_strength, 0.0, 1.0));
  TINYFED_RETURN_IF_ERROR(r.Double("holdout_fraction", &p.holdout_fraction, 0.05, 0.9));
  return r.Integer("min_samples", &p.min_samples, 2, 1 << 20);
}

absl::Status ReadClinics(TomlTableReader& r, ClinicsSpec& c) {
  TINYFED_RETURN_IF_ERROR(r.Integer("count", &c.count, 2, 100000));
  int availability = 0;
  TINYFED_RETURN_IF_ERROR(r.Choice("availability", {"always", "diurnal"}, &availability));
  c.availability = static_cast<Availability>(availability);
  TINYFED_RETURN_IF_ERROR(r.Double("min_availability", &c.min_availability, 0.0, 1.0));
  TINYFED_RETURN_IF_ERROR(r.Double("round_hours", &c.round_hours, 0.01, 168));
  auto dropout = r.Table("dropout");
  if (!dropout.ok()) return dropout.status();
  if (*dropout != nullptr) {
    TomlTableReader d(**dropout, "clinics.dropout", r.source());
    const char* phases[] = {"training", "share_keys", "masked_input", "unmasking"};
    for (size_t i = 0; i < 4; ++i) TINYFED_RETURN_IF_ERROR(d.Double(phases[i], &c.dropout[i], 0.0, 1.0));
    TINYFED_RETURN_IF_ERROR(d.RejectUnknown());
  }
  TINYFED_RETURN_IF_ERROR(r.Double("uplink_kbps", &c.uplink_kbps, 1e-3, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Double("downlink_kbps", &c.downlink_kbps, 1e-3, 1e9));
  TINYFED_RETURN_IF_ERROR(r.Double("latency_ms", &c.latency_ms, 0.0, 1e6));
  TINYFED_RETURN_IF_ERROR(r.Double("holdout_fraction", &c.holdout_fraction, 0.0, 0.9));
  TINYFED_RETURN_IF_ERROR(r.Double("solar_fraction", &c.solar_fraction, 0.0, 1.0));
  auto eligibility = r.Table("eligibility");
  if (!eligibility.ok()) return eligibility.status();
  if (*eligibility != nullptr) {
    TomlTableReader e(**eligibility, "clinics.eligibility", r.source());
    client::EligibilityPolicy& p = c.eligibility;
    TINYFED_RETURN_IF_ERROR(e.Bool("mains_power_only", &p.mains_power_only));
    TINYFED_RETURN_IF_ERROR(e.Double("min_battery", &p.min_battery, 0.0, 1.0));
    TINYFED_RETURN_IF_ERROR(e.Bool("unmetered_only", &p.unmetered_only));
    TINYFED_RETURN_IF_ERROR(e.Bool("idle_only", &p.idle_only));
    std::vector<int64_t> window;
    TINYFED_RETURN_IF_ERROR(e.Integers("window", &window, 0, 24));
    if (!window.empty() && window.size() != 2) {
      return e.Error("window must be [start_hour, end_hour]");
    }
    if (window.size() == 2) {
      p.window_start_hour = static_cast<int>(window[0] % 24);
      p.window_end_hour = static_cast<int>(window[1] % 24);
    }
    TINYFED_RETURN_IF_ERROR(e.RejectUnknown());
  }
  TINYFED_RETURN_IF_ERROR(r.Integer("cases_per_round", &c.cases_per_round, 0, 100000));
  return r.Double("compute_speed", &c.compute_speed, 1e-3, 1e3);
}

absl::Status ReadFaults(TomlTableReader& r, FaultsSpec& f) {
  TINYFED_RETURN_IF_ERROR(r.Integer("flipped_labels_round", &f.flipped_labels_round, 0, 1000000));
  TINYFED_RETURN_IF_ERROR(r.Integer("input_shift_round", &f.input_shift_round, 0, 1000000));
  TINYFED_RETURN_IF_ERROR(r.Integer("shifted_clinics", &f.shifted_clinics, 0, 100000));
  TINYFED_RETURN_IF_ERROR(r.Double("shift_scale", &f.shift_scale, 0.0, 10.0));
  TINYFED_RETURN_IF_ERROR(r.Double("shift_offset", &f.shift_offset, -10.0, 10.0));
  if ((f.input_shift_round > 0) != (f.shifted_clinics > 0)) {
    return r.Error("input_shift_round and shifted_clinics go together");
  }
  return absl::OkStatus();
}

}  // namespace

double SolarCharge(double hour) {
  // Charging from 15 % at 06:00 to full at 15:00, full until 18:00, then
  // drained by the night back to 15 % at 06:00.
  const double h = std::fmod(std::fmod(hour, 24.0) + 24.0, 24.0);
  if (h >= 6.0 && h < 15.0) return 0.15 + 0.85 * (h - 6.0) / 9.0;
  if (h >= 15.0 && h < 18.0) return 1.0;
  return 1.0 - 0.85 * std::fmod(h - 18.0 + 24.0, 24.0) / 12.0;
}

namespace {

absl::Status ReadRegions(TomlTableReader& r, RegionsSpec& g) {
  TINYFED_RETURN_IF_ERROR(r.Integer("count", &g.count, 0, 1000));
  auto kill = r.Table("kill");
  if (!kill.ok()) return kill.status();
  if (*kill == nullptr) return absl::OkStatus();
  TomlTableReader k(**kill, "regions.kill", r.source());
  TINYFED_RETURN_IF_ERROR(k.Integer("round", &g.kill_round, 1, 1000000));
  TINYFED_RETURN_IF_ERROR(k.Integer("region", &g.kill_region, 1, std::max(1, g.count)));
  int phase = 2;
  TINYFED_RETURN_IF_ERROR(k.Choice("phase", {"advertise_keys", "share_keys", "masked_input", "unmasking"}, &phase));
  constexpr v1::Phase kPhases[] = {v1::PHASE_ADVERTISE_KEYS, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT,
                                   v1::PHASE_UNMASKING};
  g.kill_phase = kPhases[phase];
  return k.RejectUnknown();
}

}  // namespace

absl::StatusOr<Scenario> ParseScenario(std::string_view text, const std::filesystem::path& source_path) {
  const std::string source = source_path.string();
  const std::filesystem::path base = source_path.parent_path();
  auto parsed = aggregator::ParseToml(text, source);
  if (!parsed.ok()) return parsed.status();
  Scenario s;
  s.source = source_path;
  s.federation = aggregator::DefaultConfig();
  s.federation.dp.epsilon_budget = 1e9;  // a simulation reports what it spends
  TomlTableReader top(*parsed, "", source);
  TINYFED_RETURN_IF_ERROR(top.String("name", &s.name));
  if (s.name.empty()) s.name = source_path.stem().string();
  TINYFED_RETURN_IF_ERROR(top.Integer("seed", &s.seed, 0, INT64_MAX));
  int transport = 0;
  TINYFED_RETURN_IF_ERROR(top.Choice("transport", {"inproc", "grpc", "processes"}, &transport));
  s.transport = static_cast<TransportKind>(transport);
  TINYFED_RETURN_IF_ERROR(top.Integer("baseline_epochs", &s.baseline_epochs, 1, 10000));
  TINYFED_RETURN_IF_ERROR(top.Integer("personalization_epochs", &s.personalization_epochs, 0, 10000));
  TINYFED_RETURN_IF_ERROR(top.String("settings_chosen_by", &s.settings_chosen_by));

  auto data = top.Table("data");
  if (!data.ok()) return data.status();
  if (*data == nullptr) return absl::InvalidArgumentError(absl::StrCat(source, ": missing required section [data]"));
  {
    TomlTableReader r(**data, "data", source);
    TINYFED_RETURN_IF_ERROR(ReadData(r, base, s.data));
    TINYFED_RETURN_IF_ERROR(r.RejectUnknown());
  }
  using Reader = std::function<absl::Status(TomlTableReader&)>;
  const std::pair<const char*, Reader> sections[] = {
      {"decision",
       [&](TomlTableReader& r) {
         TINYFED_RETURN_IF_ERROR(r.String("positive_class", &s.decision.positive_class));
         return r.Double("target_sensitivity", &s.decision.target_sensitivity, 0.01, 1.0);
       }},
      {"backbone", [&](TomlTableReader& r) { return ReadBackbone(r, base, s.backbone); }},
      {"partition", [&](TomlTableReader& r) { return ReadPartition(r, s.partition); }},
      {"clinics", [&](TomlTableReader& r) { return ReadClinics(r, s.clinics); }},
      {"regions", [&](TomlTableReader& r) { return ReadRegions(r, s.regions); }},
      {"faults", [&](TomlTableReader& r) { return ReadFaults(r, s.faults); }},
  };
  for (const auto& [name, read] : sections) {
    auto table = top.Table(name);
    if (!table.ok()) return table.status();
    if (*table == nullptr) continue;
    TomlTableReader r(**table, name, source);
    TINYFED_RETURN_IF_ERROR(read(r));
    TINYFED_RETURN_IF_ERROR(r.RejectUnknown());
  }
  TINYFED_RETURN_IF_ERROR(aggregator::ReadConfigSections(top, source, &s.federation));
  TINYFED_RETURN_IF_ERROR(top.RejectUnknown());
  // A scenario's cohort defaults to every clinic, and its minimum to half.
  const toml::table* rounds = (*parsed)["rounds"].as_table();
  if (rounds == nullptr || !rounds->contains("cohort_size")) s.federation.cohort_size = s.clinics.count;
  if (rounds == nullptr || !rounds->contains("min_cohort")) {
    s.federation.min_cohort = std::max(2, s.federation.cohort_size / 2);
  }
  if (s.federation.max_rounds < 1) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": rounds.max_rounds must be set (the rounds to simulate)"));
  }
  if (s.federation.cohort_size > s.clinics.count) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": rounds.cohort_size (", s.federation.cohort_size,
                                                   ") exceeds clinics.count (", s.clinics.count, ")"));
  }
  if (s.regions.count == 1 || s.regions.count * 3 > s.clinics.count) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": regions.count (", s.regions.count,
                                                   ") must be 0 (no regions) or 2 and more, with at least 3 clinics "
                                                   "each (SecAgg+ needs 3)"));
  }
  if (s.regions.count > 0 && (s.transport == TransportKind::kGrpc || !s.federation.secure_aggregation)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": regions run over the inproc and processes transports, with SecAgg+ (secagg.enabled = true)"));
  }
  if (s.faults.shifted_clinics > s.clinics.count) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": faults.shifted_clinics (", s.faults.shifted_clinics,
                                                   ") exceeds clinics.count (", s.clinics.count, ")"));
  }
  if (s.faults.input_shift_round > 0 && s.clinics.cases_per_round == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": faults.input_shift_round needs clinics.cases_per_round: a shift shows in the cases"));
  }
  if ((s.clinics.cases_per_round > 0 || s.faults.flipped_labels_round > 0) &&
      (s.transport == TransportKind::kProcesses || s.regions.count > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": clinics.cases_per_round and [faults] run over the inproc and grpc transports, without regions"));
  }
  if (s.backbone.bundle.empty() && s.data.public_fraction <= 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": data.public_fraction must be > 0 to pretrain, fine-tune or calibrate a backbone (or give "
                     "backbone.bundle)"));
  }
  return s;
}

absl::StatusOr<Scenario> ReadScenario(const std::filesystem::path& path) {
  auto text = base::ReadFileBytes(path, 1 << 20);
  if (!text.ok()) return text.status();
  return ParseScenario(*text, path);
}

}  // namespace tinyfed::sim
