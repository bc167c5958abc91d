#include "aggregator/internal/round_plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/rdp_accountant.h"

namespace tinyfed::aggregator::internal {

using absl::StrCat;

std::vector<uint32_t> ShuffledIds(size_t n, std::span<const uint8_t, 32> seed) {
  std::vector<uint32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0u);
  uint64_t shuffle_seed = 0;
  std::memcpy(&shuffle_seed, seed.data(), sizeof(shuffle_seed));
  std::mt19937_64 rng(shuffle_seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  return ids;
}

namespace {

bool PatientUnit(const Config& config) { return config.dp.unit == DpUnit::kPatient && config.dp.mode != DpMode::kOff; }

void SetCommonTask(const Config& config, int64_t round_id, int n, const v1::ModelRef& model, v1::RoundTask* t) {
  t->set_round_id(static_cast<uint64_t>(round_id));
  t->set_cohort_size(static_cast<uint32_t>(n));
  *t->mutable_training() = config.training;
  t->mutable_training()->set_seed(static_cast<uint64_t>(round_id));
  *t->mutable_model() = model;
}

}  // namespace

namespace {

// The SecAgg+ parameters of `n` clients summing `vector_length` values of `bits`.
absl::StatusOr<secagg::SecAggParams> ChooseSecAgg(const Config& config, int64_t round_id, int n, int bits,
                                                  uint64_t vector_length, std::span<const uint8_t, 32> graph_seed) {
  secagg::SecAggConfig sc;
  sc.round_id = static_cast<uint64_t>(round_id);
  sc.num_clients = n;
  sc.bits = bits;
  sc.vector_length = vector_length;
  sc.max_dropout = config.max_dropout;
  sc.max_corrupted = config.max_corrupted;
  std::copy(graph_seed.begin(), graph_seed.end(), sc.graph_seed.begin());
  auto params = secagg::ChooseParams(sc);
  if (!params.ok()) {
    return absl::FailedPreconditionError(StrCat("SecAgg+ parameters for ", n, " clients: ", params.status().message()));
  }
  return params;
}

void SetSecAggTask(const secagg::SecAggParams& params, int bits, uint64_t vector_length,
                   std::span<const uint8_t, 32> graph_seed, const Config& config, v1::RoundTask* t) {
  auto* s = t->mutable_secagg();
  s->set_degree(static_cast<uint32_t>(params.degree()));
  s->set_threshold(static_cast<uint32_t>(params.threshold()));
  s->set_bits(static_cast<uint32_t>(bits));
  s->set_vector_length(vector_length);
  s->set_graph_seed(graph_seed.data(), graph_seed.size());
  s->set_max_dropout(config.max_dropout);
  s->set_max_corrupted(config.max_corrupted);
}

// max(min_cohort, t), or why `n` devices are too few for it.
absl::StatusOr<int> MinSurvivors(const Config& config, int n, const secagg::SecAggParams& params) {
  const int min_survivors = std::max(config.min_cohort, params.threshold());
  if (n >= min_survivors) return min_survivors;
  return absl::FailedPreconditionError(
      StrCat("only ", n, " devices checked in; at least ", min_survivors, " must survive"));
}

}  // namespace

absl::StatusOr<SecAggPlan> PlanRegionalRound(const Config& config, int64_t round_id, int n,
                                             const v1::RoundTask& national, std::span<const uint8_t, 32> graph_seed) {
  if (!national.has_secagg() || national.ddg().rotation_seed().size() != 32) {
    return absl::FailedPreconditionError("the national task is not a SecAgg+ round with a DDG encoding");
  }
  auto ddg = dp::DdgParamsOf(national.ddg());
  if (!ddg.ok()) {
    return absl::FailedPreconditionError(StrCat("the national task's encoding: ", ddg.status().message()));
  }
  const int bits = static_cast<int>(national.secagg().bits());
  const uint64_t length = national.secagg().vector_length();
  TINYFED_ASSIGN_OR_RETURN(secagg::SecAggParams params, ChooseSecAgg(config, round_id, n, bits, length, graph_seed));
  TINYFED_ASSIGN_OR_RETURN(const int min_survivors, MinSurvivors(config, n, params));
  v1::RoundTask t;
  t.set_round_id(static_cast<uint64_t>(round_id));
  t.set_cohort_size(static_cast<uint32_t>(n));
  *t.mutable_training() = national.training();
  *t.mutable_model() = national.model();
  *t.mutable_ddg() = national.ddg();
  if (national.has_patient_dp()) *t.mutable_patient_dp() = national.patient_dp();
  SetSecAggTask(params, bits, length, graph_seed, config, &t);
  SecAggPlan plan{.params = std::move(params),
                  .ddg = *std::move(ddg),
                  .rotation_seed = {},
                  .min_survivors = min_survivors,
                  .task = std::move(t),
                  .regional = true};
  std::memcpy(plan.rotation_seed.data(), national.ddg().rotation_seed().data(), plan.rotation_seed.size());
  return plan;
}

absl::StatusOr<SecAggPlan> PlanSecAggRound(const Config& config, int64_t round_id, int n, size_t head_size,
                                           const Encoding& encoding, const v1::ModelRef& model,
                                           const SecAggSeeds& seeds) {
  dp::DdgConfig ddg = FederationDdgConfig(config, head_size, ExpectedNoisyClinics(config, n));
  ddg.noise_multiplier = ddg.noiseless ? 0.0 : encoding.noise_multiplier;
  ddg.bits = encoding.bits;
  auto ddg_params = dp::ChooseDdgParams(ddg);
  if (!ddg_params.ok()) {
    return absl::FailedPreconditionError(
        StrCat("distributed DP settings do not fit ", n, " clients: ", ddg_params.status().message()));
  }
  TINYFED_ASSIGN_OR_RETURN(secagg::SecAggParams params,
                           ChooseSecAgg(config, round_id, n, encoding.bits, dp::EncodedDimension(ddg), seeds.graph));
  TINYFED_ASSIGN_OR_RETURN(const int min_survivors, MinSurvivors(config, n, params));

  v1::RoundTask t;
  SetCommonTask(config, round_id, n, model, &t);
  SetSecAggTask(params, encoding.bits, dp::EncodedDimension(ddg), seeds.graph, config, &t);
  *t.mutable_ddg() = dp::DdgSettingsOf(ddg);
  t.mutable_ddg()->set_rotation_seed(seeds.rotation.data(), seeds.rotation.size());
  if (PatientUnit(config)) {
    auto* p = t.mutable_patient_dp();
    p->set_sampling_rate(config.dp.sampling_rate);
    p->set_noise_multiplier(encoding.noise_multiplier);
    p->set_clip(config.dp.clip);
    p->set_steps(static_cast<uint64_t>(PatientStepsPerRound(config)));
    p->set_delta(config.dp.delta);
  }
  return SecAggPlan{.params = std::move(params),
                    .ddg = *std::move(ddg_params),
                    .rotation_seed = seeds.rotation,
                    .min_survivors = min_survivors,
                    .task = std::move(t)};
}

v1::RoundTask PlanPlainRound(const Config& config, int64_t round_id, int n, const v1::ModelRef& model) {
  v1::RoundTask t;
  SetCommonTask(config, round_id, n, model, &t);
  auto* plain = t.mutable_plain();
  plain->set_clip(config.dp.clip);
  plain->set_compression(config.compression);
  plain->set_topk_fraction(config.topk_fraction);
  return t;
}

absl::StatusOr<dp::PrivacyCharge> SecAggRoundCharge(const Config& config, int64_t round_id, double z,
                                                    const dp::DdgParams& ddg, int survivors,
                                                    const std::vector<double>& orders) {
  if (PatientUnit(config)) {
    // Every patient of every surviving clinic took `steps` DP-SGD steps.
    const dp::SampledGaussianSteps steps{config.dp.sampling_rate, z, PatientStepsPerRound(config)};
    auto rdp = dp::SampledGaussianRdp(steps.sampling_rate, steps.noise_multiplier, steps.steps, orders);
    if (!rdp.ok()) return rdp.status();
    nlohmann::json params = {{"clients", survivors},
                             {"sampling_rate", steps.sampling_rate},
                             {"noise_multiplier", steps.noise_multiplier},
                             {"steps", steps.steps},
                             {"clip", config.dp.clip},
                             {"update_clip", config.dp.update_clip}};
    return dp::PrivacyCharge{.round = round_id,
                             .mechanism = "patient_dp_sgd",
                             .parameters = params.dump(),
                             .rdp = *std::move(rdp),
                             .pld = {steps}};
  }
  auto rdp = dp::DdgRdp(ddg, survivors, 1, orders);
  if (!rdp.ok()) return rdp.status();
  nlohmann::json params = {{"clients", survivors},
                           {"noise_multiplier", ddg.noise_multiplier},
                           {"clip", ddg.config.clip},
                           {"bits", ddg.config.bits},
                           {"scale", ddg.scale},
                           {"dimension", ddg.config.dimension},
                           {"local_only", ddg.config.local_only}};
  return dp::PrivacyCharge{.round = round_id,
                           .mechanism = "distributed_discrete_gaussian",
                           .parameters = params.dump(),
                           .rdp = *std::move(rdp),
                           .pld = {}};
}

absl::StatusOr<dp::PrivacyCharge> CentralRoundCharge(const Config& config, int64_t round_id, double z, int survivors,
                                                     const std::vector<double>& orders) {
  auto rdp = dp::SampledGaussianRdp(1.0, z, 1, orders);
  if (!rdp.ok()) return rdp.status();
  nlohmann::json params = {{"clients", survivors}, {"noise_multiplier", z}, {"clip", config.dp.clip}};
  return dp::PrivacyCharge{.round = round_id,
                           .mechanism = "central_gaussian",
                           .parameters = params.dump(),
                           .rdp = *std::move(rdp),
                           .pld = {{1.0, z, 1}}};
}

absl::Status CheckBudget(const Config& config, const dp::PrivacyLedger& ledger, const dp::PrivacyCharge& charge) {
  auto after = ledger.SpentAfter(charge);
  if (!after.ok()) return after.status();
  if (after->epsilon > config.dp.epsilon_budget) {
    return absl::ResourceExhaustedError(StrCat("this round would bring epsilon to ", after->epsilon,
                                               ", past the budget of ", config.dp.epsilon_budget));
  }
  return absl::OkStatus();
}

}  // namespace tinyfed::aggregator::internal
