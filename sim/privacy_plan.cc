#include "tinyfed/sim/privacy_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/pld_accountant.h"
#include "tinyfed/dp/rdp_accountant.h"

namespace tinyfed::sim {

using aggregator::DpMode;
using aggregator::DpUnit;

absl::StatusOr<PrivacyPlan> PlanPrivacy(const Scenario& s, const FederationShape& shape) {
  const aggregator::Config& f = s.federation;
  PrivacyPlan p;
  p.delta = f.dp.delta;
  p.rounds = f.max_rounds;
  p.head_parameters = shape.classes * (shape.embedding_size + 1);
  p.expected_survivors = aggregator::ExpectedNoisyClinics(f, f.cohort_size);
  std::vector<size_t> sizes = shape.clinic_train_sizes;
  std::sort(sizes.begin(), sizes.end());
  if (!sizes.empty()) {
    p.smallest_clinic = sizes.front();
    p.median_clinic = sizes[sizes.size() / 2];
  }
  if (f.dp.mode == DpMode::kOff) {
    p.unit = p.accountant = "none";
    p.mechanism = "none (dp.mode = off)";
    return p;
  }
  auto encoding = aggregator::ResolveEncoding(f, p.head_parameters);
  if (!encoding.ok()) return encoding.status();
  p.noise_multiplier = encoding->noise_multiplier;
  p.bits = encoding->bits;
  const double root_d = std::sqrt(static_cast<double>(p.head_parameters));
  const double m = p.expected_survivors;
  if (f.dp.unit == DpUnit::kPatient) {
    p.unit = "patient";
    p.accountant = "pld";
    p.mechanism = "DP-SGD at each clinic (Poisson-subsampled Gaussian); SecAgg+ adds no noise";
    p.sampling_rate = f.dp.sampling_rate;
    p.steps_per_round = aggregator::PatientStepsPerRound(f);
    const dp::SampledGaussianSteps all{p.sampling_rate, p.noise_multiplier, p.rounds * p.steps_per_round};
    auto eps = dp::PldEpsilon({&all, 1}, p.delta);
    if (!eps.ok()) return eps.status();
    p.epsilon = *eps;
    // A step's mean gradient: noise z C sqrt(d) / (q n) against at most C.
    auto step = [&](size_t n) { return n == 0 ? INFINITY : p.noise_multiplier * root_d / (p.sampling_rate * n); };
    p.step_noise_smallest = step(p.smallest_clinic);
    p.step_noise_median = step(p.median_clinic);
    p.round_noise = p.step_noise_median / std::sqrt(static_cast<double>(p.steps_per_round) * m);
    return p;
  }
  p.unit = "clinic";
  if (f.dp.mode == DpMode::kCentral) {
    p.accountant = "pld";
    p.mechanism = "Gaussian noise on the sum, added by the (trusted) aggregator";
    const dp::SampledGaussianSteps all{1.0, p.noise_multiplier, p.rounds};
    auto eps = dp::PldEpsilon({&all, 1}, p.delta);
    if (!eps.ok()) return eps.status();
    p.epsilon = *eps;
    p.step_noise_smallest = p.step_noise_median = p.noise_multiplier * root_d / m;
    p.round_noise = p.step_noise_median;
    return p;
  }
  p.accountant = "rdp";
  const bool local = f.dp.mode == DpMode::kLocal;
  p.mechanism = local ? "discrete Gaussian, each clinic adding all of it (local DP)"
                      : "distributed discrete Gaussian: each clinic adds its share, SecAgg+ sums them";
  dp::DdgConfig c = aggregator::FederationDdgConfig(f, p.head_parameters, p.expected_survivors);
  c.noise_multiplier = p.noise_multiplier;
  c.bits = p.bits;
  auto params = dp::ChooseDdgParams(c);
  if (!params.ok()) return params.status();
  const auto orders = dp::DefaultOrders();
  auto rdp = dp::DdgRdp(*params, p.expected_survivors, p.rounds, orders);
  if (!rdp.ok()) return rdp.status();
  auto eps = dp::EpsilonFromRdp(orders, *rdp, p.delta);
  if (!eps.ok()) return eps.status();
  p.epsilon = eps->epsilon;
  // Local: each update carries z c, and the mean divides it by sqrt(m).
  // Distributed: each carries a share z c / sqrt(m); the sum carries z c,
  // and the mean divides it by m.
  p.step_noise_smallest = p.step_noise_median = p.noise_multiplier * root_d / (local ? 1.0 : std::sqrt(m));
  p.round_noise = p.noise_multiplier * root_d / (local ? std::sqrt(m) : m);
  return p;
}

std::string FormatPrivacyPlan(const PrivacyPlan& p) {
  if (p.unit == "none") return "No differential privacy (dp.mode = off): nothing bounds what the models reveal.\n";
  std::string out = absl::StrFormat(
      "unit: %s\nmechanism: %s\nnoise multiplier: %.4f\nepsilon after %d rounds: %.3f at delta %g (%s accountant)\n"
      "head: %zu parameters; %d clinics expected to survive a round; clinics hold %zu (smallest) to %zu (median) "
      "training samples\n",
      p.unit, p.mechanism, p.noise_multiplier, p.rounds, p.epsilon, p.delta, p.accountant == "pld" ? "PLD" : "RDP",
      p.head_parameters, p.expected_survivors, p.smallest_clinic, p.median_clinic);
  if (p.bits > 0) absl::StrAppendFormat(&out, "SecAgg+ encoding: %d bits per value\n", p.bits);
  if (p.unit == "patient") {
    absl::StrAppendFormat(&out,
                          "DP-SGD: %d steps a round at sampling rate %g\n"
                          "noise / clipped signal, one step at a clinic: %.3f (smallest clinic), %.3f (median)\n",
                          p.steps_per_round, p.sampling_rate, p.step_noise_smallest, p.step_noise_median);
  } else {
    absl::StrAppendFormat(&out, "noise / clipped update, where it is added: %.3f\n", p.step_noise_median);
  }
  absl::StrAppendFormat(&out, "noise / clipped update, on a round's mean: %.3f%s\n", p.round_noise,
                        p.round_noise > 1.0 ? "  (above 1: the rounds average mostly noise)" : "");
  return out;
}

}  // namespace tinyfed::sim
