#include "aggregator/internal/round_plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tinyfed/aggregator/noise.h"
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

absl::StatusOr<SecAggPlan> PlanSecAggRound(const Config& config, int64_t round_id, int n, size_t head_size, double z,
                                           const v1::ModelRef& model, const SecAggSeeds& seeds) {
  dp::DdgConfig ddg = FederationDdgConfig(config, head_size, ExpectedNoisyClinics(config, n));
  ddg.noise_multiplier = ddg.noiseless ? 0.0 : z;
  auto ddg_params = dp::ChooseDdgParams(ddg);
  if (!ddg_params.ok()) {
    return absl::FailedPreconditionError(
        StrCat("distributed DP settings do not fit ", n, " clients: ", ddg_params.status().message()));
  }
  secagg::SecAggConfig sc;
  sc.round_id = static_cast<uint64_t>(round_id);
  sc.num_clients = n;
  sc.bits = config.dp.bits;
  sc.vector_length = ddg_params->padded_dimension;
  sc.max_dropout = config.max_dropout;
  sc.max_corrupted = config.max_corrupted;
  sc.graph_seed = seeds.graph;
  auto params = secagg::ChooseParams(sc);
  if (!params.ok()) {
    return absl::FailedPreconditionError(StrCat("SecAgg+ parameters for ", n, " clients: ", params.status().message()));
  }
  const int min_survivors = std::max(config.min_cohort, params->threshold());
  if (n < min_survivors) {
    return absl::FailedPreconditionError(
        StrCat("only ", n, " devices checked in; at least ", min_survivors, " must survive"));
  }

  v1::RoundTask t;
  SetCommonTask(config, round_id, n, model, &t);
  auto* s = t.mutable_secagg();
  s->set_degree(static_cast<uint32_t>(params->degree()));
  s->set_threshold(static_cast<uint32_t>(params->threshold()));
  s->set_bits(static_cast<uint32_t>(sc.bits));
  s->set_vector_length(sc.vector_length);
  s->set_graph_seed(sc.graph_seed.data(), sc.graph_seed.size());
  s->set_max_dropout(sc.max_dropout);
  s->set_max_corrupted(sc.max_corrupted);
  *t.mutable_ddg() = dp::DdgSettingsOf(ddg);
  t.mutable_ddg()->set_rotation_seed(seeds.rotation.data(), seeds.rotation.size());
  if (PatientUnit(config)) {
    auto* p = t.mutable_patient_dp();
    p->set_sampling_rate(config.dp.sampling_rate);
    p->set_noise_multiplier(z);
    p->set_clip(config.dp.clip);
    p->set_steps(static_cast<uint64_t>(PatientStepsPerRound(config)));
    p->set_delta(config.dp.delta);
  }
  return SecAggPlan{.params = *std::move(params),
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
                           {"padded_dimension", ddg.padded_dimension},
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
