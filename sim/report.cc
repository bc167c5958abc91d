// Writing a simulation's report: JSON for programs, CSV for spreadsheets,
// gnuplot figures and a Markdown summary for people.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "tinyfed/base/file_io.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim {
namespace {

using absl::StrCat;
using absl::StrFormat;

nlohmann::json ToJson(const Metrics& m) {
  return {{"accuracy", m.accuracy},
          {"balanced_accuracy", m.balanced_accuracy()},
          {"worst_sensitivity", m.worst_sensitivity()},
          {"loss", m.loss},
          {"sensitivity", m.sensitivity},
          {"specificity", m.specificity}};
}

const char* DpModeName(aggregator::DpMode m) {
  switch (m) {
    case aggregator::DpMode::kDistributed:
      return "distributed";
    case aggregator::DpMode::kLocal:
      return "local";
    case aggregator::DpMode::kCentral:
      return "central";
    case aggregator::DpMode::kOff:
      return "off";
  }
  return "?";
}

const char* PrivacyUnitName(const aggregator::DpConfig& dp) {
  if (dp.mode == aggregator::DpMode::kOff) return "none";
  return dp.unit == aggregator::DpUnit::kPatient ? "patient" : "clinic";
}

// The ledger counts the tighter accountant that applies: PLD for the
// Poisson-subsampled Gaussian (patient DP-SGD, central noise), RDP for the
// distributed discrete Gaussian.
const char* AccountantName(const aggregator::DpConfig& dp) {
  if (dp.mode == aggregator::DpMode::kOff) return "none";
  return dp.unit == aggregator::DpUnit::kPatient || dp.mode == aggregator::DpMode::kCentral ? "pld" : "rdp";
}

std::string AggregationName(const aggregator::Config& f, int bits) {
  if (f.secure_aggregation) return StrFormat("SecAgg+ at %d bits", bits);
  const char* compression = f.compression == v1::COMPRESSION_INT8   ? "int8"
                            : f.compression == v1::COMPRESSION_TOPK ? "top-k"
                                                                    : "no";
  return StrFormat("no SecAgg+ (trusted aggregator), %s compression", compression);
}

std::vector<uint64_t> Sorted(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// `field`: a member of ClinicResult, or a function of one.
template <typename Field>
double Mean(const std::vector<ClinicResult>& clinics, Field field) {
  if (clinics.empty()) return 0.0;
  double sum = 0.0;
  for (const auto& c : clinics) sum += std::invoke(field, c);
  return sum / static_cast<double>(clinics.size());
}

// Whether every clinic has `field` (negative: not measured).
template <typename Field>
bool Measured(const std::vector<ClinicResult>& clinics, Field field) {
  return !clinics.empty() &&
         std::all_of(clinics.begin(), clinics.end(), [&](const auto& c) { return std::invoke(field, c) >= 0; });
}

// The clinics where the served head is more than 1 point below the
// federated one, and how far below it is where it is lowest.
struct BelowFederated {
  int clinics = 0;
  double worst_points = 0.0;
};

template <typename Field>
BelowFederated CountBelow(const std::vector<ClinicResult>& clinics, Field served, Field federated) {
  BelowFederated below;
  for (const ClinicResult& c : clinics) {
    const double gap = std::invoke(served, c) - std::invoke(federated, c);
    below.clinics += gap < -0.01 - 1e-9;  // exactly one point (1 case in 100) is not more
    below.worst_points = std::max(below.worst_points, -100 * gap);
  }
  return below;
}

// A clinic's `score` on one split's OnCaseMix, as a function of the clinic.
auto OnMix(OnCaseMix ClinicResult::*split, double OnCaseMix::*score) {
  return [split, score](const ClinicResult& c) { return c.*split.*score; };
}

nlohmann::json ToJson(const OnCaseMix& m) {
  return {{"local_only", m.local_only}, {"federated", m.federated}, {"served", m.served}};
}

// One split's OnCaseMix: the means over clinics, and the clinics served
// more than 1 point below the federated head.
nlohmann::json CaseMixJson(const std::vector<ClinicResult>& clinics, OnCaseMix ClinicResult::*split) {
  const BelowFederated below =
      CountBelow(clinics, OnMix(split, &OnCaseMix::served), OnMix(split, &OnCaseMix::federated));
  return {{"local_only", Mean(clinics, OnMix(split, &OnCaseMix::local_only))},
          {"federated", Mean(clinics, OnMix(split, &OnCaseMix::federated))},
          {"served", Mean(clinics, OnMix(split, &OnCaseMix::served))},
          {"served_below_federated", below.clinics}};
}

nlohmann::json ReportJson(const SimulationReport& r) {
  const Scenario& s = r.scenario;
  nlohmann::json j;
  j["schema"] = "tinyfed.sim.report/1";
  j["scenario"] = {{"name", s.name},
                   {"file", s.source.string()},
                   {"seed", s.seed},
                   {"transport", s.transport == TransportKind::kInProcess ? "inproc"
                                 : s.transport == TransportKind::kGrpc    ? "grpc"
                                                                          : "processes"},
                   {"clinics", s.clinics.count},
                   {"rounds", s.federation.max_rounds},
                   {"cohort_size", s.federation.cohort_size},
                   {"dp_mode", DpModeName(s.federation.dp.mode)},
                   {"noise_multiplier", r.noise_multiplier},
                   {"target_epsilon", s.federation.dp.target_epsilon},
                   {"clip", s.federation.dp.clip},
                   {"bits", r.bits},
                   {"secure_aggregation", s.federation.secure_aggregation},
                   {"compression", v1::Compression_Name(s.federation.compression)}};
  j["backbone"] = {{"description", r.backbone}, {"embedding_size", r.embedding_size}};
  j["test_samples"] = r.test_samples;
  j["label_names"] = r.label_names;
  j["privacy"] = {{"epsilon", r.epsilon},
                  {"delta", r.delta},
                  {"differentially_private", s.federation.dp.mode != aggregator::DpMode::kOff},
                  {"unit", PrivacyUnitName(s.federation.dp)},
                  {"accountant", AccountantName(s.federation.dp)},
                  {"target_epsilon", s.federation.dp.target_epsilon}};
  if (s.federation.dp.unit == aggregator::DpUnit::kPatient) {
    j["privacy"]["sampling_rate"] = s.federation.dp.sampling_rate;
    j["privacy"]["steps_per_round"] = aggregator::PatientStepsPerRound(s.federation);
  }
  j["baselines"] = {{"initial", ToJson(r.initial)},
                    {"centralized", ToJson(r.centralized)},
                    {"federated", ToJson(r.federated)},
                    {"local_only_mean_on_test", r.mean_local_only_on_test},
                    {"clinic_slices",
                     {{"local_only", Mean(r.clinics, &ClinicResult::local_only)},
                      {"federated", Mean(r.clinics, &ClinicResult::federated)},
                      {"personalized", Mean(r.clinics, &ClinicResult::personalized)},
                      {"served", Mean(r.clinics, &ClinicResult::served)}}}};
  if (Measured(r.clinics, OnMix(&ClinicResult::test_mix, &OnCaseMix::served))) {
    j["baselines"]["clinic_case_mix"] = CaseMixJson(r.clinics, &ClinicResult::test_mix);
  }
  j["validation"] = {{"samples", r.validation_samples},
                     {"centralized", ToJson(r.centralized_validation)},
                     {"federated", ToJson(r.federated_validation)},
                     {"settings_chosen_by", s.settings_chosen_by}};
  if (Measured(r.clinics, OnMix(&ClinicResult::validation_mix, &OnCaseMix::served))) {
    j["validation"]["clinic_case_mix"] = CaseMixJson(r.clinics, &ClinicResult::validation_mix);
  }
  if (r.positive_class >= 0) {
    j["decision"] = {{"positive_class", s.decision.positive_class},
                     {"target_sensitivity", s.decision.target_sensitivity},
                     {"threshold", r.threshold},
                     {"chosen_on", "validation"},
                     {"federated_on_test", ToJson(r.federated_at_threshold)}};
  }
  j["rounds"] = nlohmann::json::array();
  for (const auto& x : r.rounds) {
    j["rounds"].push_back({{"round", x.round},
                           {"completed", x.completed},
                           {"reason", x.reason},
                           {"test", ToJson(x.test)},
                           {"validation_accuracy", x.validation_accuracy},
                           {"available", x.available},
                           {"selected", x.selected},
                           {"survivors", x.survivors},
                           {"dropouts", x.dropouts},
                           {"ineligible", x.ineligible},
                           {"epsilon", x.epsilon},
                           {"bytes_up_per_client", x.bytes_up_per_client},
                           {"bytes_down_per_client", x.bytes_down_per_client},
                           {"update_bits_per_coordinate", x.update_bits_per_coordinate},
                           {"protocol_bits_per_coordinate", x.protocol_bits_per_coordinate},
                           {"model_bytes_down_per_client", x.model_bytes_down_per_client},
                           {"simulated_seconds", x.simulated_seconds},
                           {"wall_seconds", x.wall_seconds},
                           {"rollout", x.rollout},
                           {"canary_passes", x.canary_passes},
                           {"installed_outside_canary", x.installed_outside_canary},
                           {"drift_devices", x.drift_devices},
                           {"drift_fleet", x.drift_fleet}});
  }
  j["clinics"] = nlohmann::json::array();
  for (const auto& c : r.clinics) {
    j["clinics"].push_back({{"id", c.id},
                            {"train_samples", c.train_samples},
                            {"holdout_samples", c.holdout_samples},
                            {"local_only", c.local_only},
                            {"local_only_on_test", c.local_only_on_test},
                            {"federated", c.federated},
                            {"personalized", c.personalized},
                            {"served", c.served},
                            {"served_personal", c.served_personal},
                            {"test_mix", ToJson(c.test_mix)},
                            {"validation_mix", ToJson(c.validation_mix)}});
  }
  j["wall_seconds"] = r.wall_seconds;
  j["client_rounds_per_second"] = r.client_rounds_per_second;
  if (!r.gateway_peak_rss_bytes.empty()) {
    const std::vector<uint64_t> rss = Sorted(r.gateway_peak_rss_bytes);
    j["gateway_peak_rss_bytes"] = {{"gateways", rss.size()}, {"median", rss[rss.size() / 2]}, {"max", rss.back()}};
  }
  return j;
}

// The canary rollouts' decisions and the drift flags, when there were any.
std::string RolloutAndDrift(const SimulationReport& r) {
  std::string out;
  int promoted = 0, outside = 0;
  std::vector<std::string> rolled_back;
  for (const RoundResult& x : r.rounds) {
    promoted += x.rollout == "promoted";
    outside += x.installed_outside_canary;
    if (absl::StartsWith(x.rollout, "rolled back"))
      rolled_back.push_back(StrCat("round ", x.round, "'s model ", x.rollout));
  }
  if (promoted > 0 || !rolled_back.empty()) {
    absl::StrAppend(&out, StrFormat("Canary rollout: %d models promoted, %zu rolled back%s%s; clinics outside the "
                                    "canary that installed a model before it was decided: %d.\n\n",
                                    promoted, rolled_back.size(), rolled_back.empty() ? "" : " (",
                                    absl::StrJoin(rolled_back, "; ") + (rolled_back.empty() ? "" : ")"), outside));
  }
  int first_device = 0, first_fleet = 0, rounds_flagged = 0;
  for (const RoundResult& x : r.rounds) {
    if (x.drift_devices > 0 && first_device == 0) first_device = x.round;
    if (x.drift_fleet && first_fleet == 0) first_fleet = x.round;
    rounds_flagged += x.drift_devices > 0 || x.drift_fleet;
  }
  if (r.scenario.clinics.cases_per_round > 0) {
    const FaultsSpec& f = r.scenario.faults;
    absl::StrAppend(
        &out, StrFormat("Drift watch (%d cases per clinic and round): %s; flags raised after %d of %zu rounds, first "
                        "for a clinic after round %s, for the fleet after round %s.\n\n",
                        r.scenario.clinics.cases_per_round,
                        f.input_shift_round > 0 ? StrFormat("%d clinics' inputs shift from round %d", f.shifted_clinics,
                                                            f.input_shift_round)
                                                : std::string("no shift"),
                        rounds_flagged, r.rounds.size(), first_device ? StrCat(first_device) : "-",
                        first_fleet ? StrCat(first_fleet) : "-"));
  }
  return out;
}

std::string RoundsCsv(const SimulationReport& r) {
  std::string out =
      "round,completed,accuracy,loss,available,selected,survivors,dropouts,epsilon,bytes_up_per_client,"
      "bytes_down_per_client,simulated_seconds,wall_seconds,ineligible,rollout,installed_outside_canary,"
      "drift_devices,drift_fleet,update_bits_per_coordinate,protocol_bits_per_coordinate,"
      "model_bytes_down_per_client\n";
  for (const auto& x : r.rounds) {
    absl::StrAppend(
        &out, StrFormat("%d,%d,%.6f,%.6f,%d,%d,%d,%d,%.6f,%.0f,%.0f,%.3f,%.3f,%d,%s,%d,%d,%d,%.3f,%.3f,%.0f\n", x.round,
                        x.completed, x.test.accuracy, x.test.loss, x.available, x.selected, x.survivors, x.dropouts,
                        x.epsilon, x.bytes_up_per_client, x.bytes_down_per_client, x.simulated_seconds, x.wall_seconds,
                        x.ineligible, x.rollout, x.installed_outside_canary, x.drift_devices, x.drift_fleet,
                        x.update_bits_per_coordinate, x.protocol_bits_per_coordinate, x.model_bytes_down_per_client));
  }
  return out;
}

std::string ClinicsData(const SimulationReport& r) {
  std::string out = "# index local_only federated personalized\n";
  for (size_t i = 0; i < r.clinics.size(); ++i) {
    const auto& c = r.clinics[i];
    absl::StrAppend(&out, StrFormat("%zu %.6f %.6f %.6f\n", i, c.local_only, c.federated, c.personalized));
  }
  return out;
}

// One script, two terminals: every figure as SVG and PNG.
std::string GnuplotScript(const SimulationReport& r) {
  std::string body = StrFormat(R"gp(set datafile separator ","
set key bottom right
set grid
set xlabel "round"
set ylabel "test accuracy (%%)"
set y2label "epsilon"
set ytics nomirror
set y2tics
set output "accuracy.%%s"
set title "%s: accuracy and privacy"
plot "rounds.csv" using 1:($3*100) skip 1 with linespoints title "federated", \
     %.4f title "centralized" dashtype 2, \
     %.4f title "local-only (mean)" dashtype 3, \
     "rounds.csv" using 1:9 skip 1 axes x1y2 with lines title "epsilon"
unset y2label
unset y2tics
set ytics mirror
set ylabel "bytes per client"
set output "bytes.%%s"
set title "traffic per participating client"
plot "rounds.csv" using 1:10 skip 1 with linespoints title "up", \
     "rounds.csv" using 1:11 skip 1 with linespoints title "down"
set datafile separator whitespace
set xlabel "clinic"
set ylabel "accuracy on its own held-out slice (%%)"
set output "clinics.%%s"
set title "per-clinic accuracy"
plot "clinics.dat" using 1:($2*100) with points pt 6 title "local-only", \
     "clinics.dat" using 1:($3*100) with points pt 7 title "federated", \
     "clinics.dat" using 1:($4*100) with points pt 5 title "personalized"
)gp",
                               r.scenario.name, 100 * r.centralized.accuracy, 100 * r.mean_local_only_on_test);
  std::string script;
  for (const char* ext : {"svg", "png"}) {
    absl::StrAppend(&script, ext == std::string("svg") ? "set terminal svg size 800,480 dynamic\n"
                                                       : "set terminal pngcairo size 800,480\n");
    std::string b = body;
    for (size_t at; (at = b.find("%s")) != std::string::npos;) b.replace(at, 2, ext);
    absl::StrAppend(&script, b);
  }
  return script;
}

// What was spent and what was promised; "epsilon 0" would read as perfect
// privacy when there is none.
std::string PrivacySummary(const SimulationReport& r, int completed) {
  const aggregator::DpConfig& dp = r.scenario.federation.dp;
  if (dp.mode == aggregator::DpMode::kOff) {
    return "Privacy: **no differential privacy** (dp.mode = \"off\"): updates are clipped, not noised; nothing "
           "bounds what the published models reveal about a clinic.";
  }
  const std::string promised =
      dp.target_epsilon > 0
          ? StrFormat("a target of %g over %d rounds", dp.target_epsilon, r.scenario.federation.max_rounds)
          : StrFormat("noise multiplier %.3f, no target", r.noise_multiplier);
  if (dp.unit == aggregator::DpUnit::kPatient) {
    return StrFormat(
        "Privacy: epsilon %.3f spent of %s, at delta %g, after %d completed rounds (patient-level DP: "
        "each clinic's DP-SGD hides any one patient, from its own noise, %d steps a round at sampling "
        "rate %g; PLD accountant; SecAgg+ hides each clinic's update).",
        r.epsilon, promised, r.delta, completed, aggregator::PatientStepsPerRound(r.scenario.federation),
        dp.sampling_rate);
  }
  return StrFormat(
      "Privacy: epsilon %.3f spent of %s, at delta %g, after %d completed rounds (%s DP, each clinic's "
      "whole data as the unit; %s accountant).",
      r.epsilon, promised, r.delta, completed, DpModeName(dp.mode),
      dp.mode == aggregator::DpMode::kCentral ? "PLD" : "RDP");
}

std::string Summary(const SimulationReport& r, bool plotted) {
  const Scenario& s = r.scenario;
  const auto& f = s.federation;
  std::vector<double> times;
  int completed = 0, dropouts = 0;
  double up = 0, down = 0, update_bits = 0, protocol_bits = 0, model = 0;
  for (const auto& x : r.rounds) {
    if (!x.completed) continue;
    ++completed;
    dropouts += x.dropouts;
    times.push_back(x.simulated_seconds);
    up += x.bytes_up_per_client;
    down += x.bytes_down_per_client;
    update_bits += x.update_bits_per_coordinate;
    protocol_bits += x.protocol_bits_per_coordinate;
    model += x.model_bytes_down_per_client;
  }
  std::sort(times.begin(), times.end());
  const double median_time = times.empty() ? 0.0 : times[times.size() / 2];
  std::string out = StrFormat("# %s\n\n", s.name);
  absl::StrAppend(
      &out,
      StrFormat("%d clinics, %s partition, cohort %d, %d rounds; DP %s (%s clip %g, noise multiplier %.3f); %s; "
                "%s transport; seed %d.\nBackbone: %s (%zu-dim embedding).\n\n",
                s.clinics.count,
                s.partition.kind == PartitionKind::kDirichlet ? StrFormat("Dirichlet(%g)", s.partition.alpha) : "IID",
                f.cohort_size, f.max_rounds, DpModeName(f.dp.mode),
                f.dp.unit == aggregator::DpUnit::kPatient ? "patient level, DP-SGD per-patient" : "clinic level,",
                f.dp.clip, r.noise_multiplier, AggregationName(f, r.bits),
                s.transport == TransportKind::kInProcess ? "in-process"
                : s.transport == TransportKind::kGrpc    ? "gRPC (one process)"
                                                         : "gRPC (one process per clinic)",
                s.seed, r.backbone, r.embedding_size));
  absl::StrAppend(&out, StrFormat("| head | test accuracy (%zu samples) |\n|---|---|\n", r.test_samples));
  absl::StrAppend(
      &out, StrFormat("| centralized, on all clinics' data (upper bound) | %.2f %% |\n", 100 * r.centralized.accuracy));
  absl::StrAppend(
      &out, StrFormat("| **federated, after %d rounds** | **%.2f %%** |\n", f.max_rounds, 100 * r.federated.accuracy));
  absl::StrAppend(&out, StrFormat("| local-only, mean over clinics | %.2f %% |\n", 100 * r.mean_local_only_on_test));
  absl::StrAppend(&out, StrFormat("| initial (zero) head | %.2f %% |\n\n", 100 * r.initial.accuracy));
  absl::StrAppend(&out, PrivacySummary(r, completed), "\n\n");
  if (r.validation_samples > 0) {
    absl::StrAppend(&out, StrFormat("Validation split (%zu samples, for choosing settings; never the test split): "
                                    "centralized %.2f %%, federated %.2f %%. Settings chosen by: %s.\n\n",
                                    r.validation_samples, 100 * r.centralized_validation.accuracy,
                                    100 * r.federated_validation.accuracy, s.settings_chosen_by));
  } else {
    absl::StrAppend(&out, StrFormat("No validation split. Settings chosen by: %s.\n\n", s.settings_chosen_by));
  }
  if (r.positive_class >= 0) {
    const size_t c = static_cast<size_t>(r.positive_class);
    absl::StrAppend(&out,
                    StrFormat("Decision threshold for %s: probability >= %.3f, chosen on the validation split for "
                              "sensitivity >= %g. On the test split the federated head then has %s sensitivity "
                              "%.3f, specificity %.3f, accuracy %.2f %%.\n\n",
                              s.decision.positive_class, r.threshold, s.decision.target_sensitivity,
                              s.decision.positive_class, r.federated_at_threshold.sensitivity[c],
                              r.federated_at_threshold.specificity[c], 100 * r.federated_at_threshold.accuracy));
  }
  if (r.federated.accuracy < r.mean_local_only_on_test) {
    absl::StrAppend(&out, StrFormat("**Warning: the federated head (%.2f %%) is below the clinics' local-only mean "
                                    "(%.2f %%) on the test set: the federation does not pay for itself here.**\n\n",
                                    100 * r.federated.accuracy, 100 * r.mean_local_only_on_test));
  }
  absl::StrAppend(
      &out, StrFormat("On each clinic's own held-out slice (mean): local-only %.2f %%, federated %.2f %%, "
                      "federated then fine-tuned for %d epochs (personalized) %.2f %%.\n\n",
                      100 * Mean(r.clinics, &ClinicResult::local_only), 100 * Mean(r.clinics, &ClinicResult::federated),
                      s.personalization_epochs, 100 * Mean(r.clinics, &ClinicResult::personalized)));
  if (Measured(r.clinics, &ClinicResult::served)) {
    int personal = 0;
    for (const ClinicResult& c : r.clinics) personal += c.served_personal;
    const BelowFederated below = CountBelow(r.clinics, &ClinicResult::served, &ClinicResult::federated);
    absl::StrAppend(&out, StrFormat("What the gateways serve (a personal head where it beat the federated one, "
                                    "cross-validated on the gateway's own samples): mean %.2f %%, "
                                    "personal on %d of %zu clinics; more than 1 point below the federated "
                                    "head on %d, the worst %.2f points below it.\n\n",
                                    100 * Mean(r.clinics, &ClinicResult::served), personal, r.clinics.size(),
                                    below.clinics, below.worst_points));
  }
  auto mix = [](double OnCaseMix::*score) { return OnMix(&ClinicResult::test_mix, score); };
  if (Measured(r.clinics, mix(&OnCaseMix::served))) {
    const BelowFederated below = CountBelow(r.clinics, mix(&OnCaseMix::served), mix(&OnCaseMix::federated));
    absl::StrAppend(
        &out, StrFormat("On the test split weighted to each clinic's class shares (%zu cases instead of the slice's "
                        "few dozen; mean): local-only %.2f %%, federated %.2f %%, served %.2f %%; served more than 1 "
                        "point below the federated head on %d, the worst %.2f points below it.\n\n",
                        r.test_samples, 100 * Mean(r.clinics, mix(&OnCaseMix::local_only)),
                        100 * Mean(r.clinics, mix(&OnCaseMix::federated)),
                        100 * Mean(r.clinics, mix(&OnCaseMix::served)), below.clinics, below.worst_points));
  }
  absl::StrAppend(&out, RolloutAndDrift(r));
  if (s.transport == TransportKind::kProcesses) {
    absl::StrAppend(&out, StrFormat("Rounds completed %d of %zu; %d dropouts (traffic and round time are not "
                                    "measured with one process per clinic).\n\n",
                                    completed, r.rounds.size(), dropouts));
  } else {
    absl::StrAppend(&out, StrFormat("Rounds completed %d of %zu; %d dropouts; per participating client and round "
                                    "%.1f KB up and %.1f KB down; median simulated round time %.1f s on %g kbit/s "
                                    "up, %g kbit/s down, %g ms latency, compute speed %g.\n\n",
                                    completed, r.rounds.size(), dropouts, completed ? up / completed / 1e3 : 0.0,
                                    completed ? down / completed / 1e3 : 0.0, median_time, s.clinics.uplink_kbps,
                                    s.clinics.downlink_kbps, s.clinics.latency_ms, s.clinics.compute_speed));
    if (completed) {
      absl::StrAppend(&out, StrFormat("Per coordinate of the head, the upload is %.2f bits of encoded update and %.2f "
                                      "bits of protocol (keys, shares, signatures, headers); %.1f KB of the download "
                                      "is model.\n\n",
                                      update_bits / completed, protocol_bits / completed, model / completed / 1e3));
    }
  }
  absl::StrAppend(&out, StrFormat("Final model per class (test; balanced accuracy %.2f %%, worst class's sensitivity "
                                  "%.3f): sensitivity / specificity\n\n",
                                  100 * r.federated.balanced_accuracy(), r.federated.worst_sensitivity()));
  for (size_t c = 0; c < r.federated.sensitivity.size(); ++c) {
    const std::string name = c < r.label_names.size() ? r.label_names[c] : StrCat("class ", c);
    absl::StrAppend(&out,
                    StrFormat("- %s: %.3f / %.3f\n", name, r.federated.sensitivity[c], r.federated.specificity[c]));
  }
  if (!r.gateway_peak_rss_bytes.empty()) {
    const std::vector<uint64_t> rss = Sorted(r.gateway_peak_rss_bytes);
    absl::StrAppend(&out, StrFormat("\nGateway processes' peak resident memory: median %.1f MB, largest %.1f MB "
                                    "(%zu gateways).\n",
                                    rss[rss.size() / 2] / 1e6, rss.back() / 1e6, rss.size()));
  }
  absl::StrAppend(&out, StrFormat("\nWall time %.1f s (%.1f client-rounds per second). Files: report.json "
                                  "(schema in docs/sim.md), rounds.csv%s.\n",
                                  r.wall_seconds, r.client_rounds_per_second,
                                  plotted ? ", accuracy/bytes/clinics .svg and .png" : " (gnuplot missing: no plots)"));
  return out;
}

}  // namespace

double Metrics::balanced_accuracy() const {
  double sum = 0.0;
  int classes = 0;
  for (double s : sensitivity) {
    if (std::isnan(s)) continue;
    sum += s;
    ++classes;
  }
  return classes ? sum / classes : std::nan("");
}

double Metrics::worst_sensitivity() const {
  double worst = std::nan("");
  for (double s : sensitivity) {
    if (!std::isnan(s) && !(worst <= s)) worst = s;
  }
  return worst;
}

absl::Status WriteReport(const SimulationReport& r, const std::filesystem::path& out) {
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) return absl::FailedPreconditionError(StrCat("cannot create ", out.string(), ": ", ec.message()));
  if (auto s = base::WriteFileAtomically(out / "report.json", ReportJson(r).dump(2) + "\n"); !s.ok()) return s;
  if (auto s = base::WriteFileAtomically(out / "rounds.csv", RoundsCsv(r)); !s.ok()) return s;
  if (auto s = base::WriteFileAtomically(out / "clinics.dat", ClinicsData(r)); !s.ok()) return s;
  if (auto s = base::WriteFileAtomically(out / "plots.gp", GnuplotScript(r)); !s.ok()) return s;
  bool plotted = false;
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string command = StrCat("cd '", out.string(), "' && gnuplot plots.gp 2>gnuplot.log");
    plotted = std::system(command.c_str()) == 0;
  }
  return base::WriteFileAtomically(out / "summary.md", Summary(r, plotted));
}

}  // namespace tinyfed::sim
