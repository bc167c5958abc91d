#include "client/internal/round_cost.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tinyfed/dp/rdp_accountant.h"

namespace tinyfed::client::internal {

using absl::StrCat;

RoundCost CostOfRound(const v1::RoundTask& task, const std::vector<double>& orders, bool budgeted) {
  auto decline = [](std::string why) { return RoundCost{.charge = std::nullopt, .decline = std::move(why)}; };
  dp::PrivacyCharge charge{
      .round = static_cast<int64_t>(task.round_id()), .mechanism = "", .parameters = "", .rdp = {}, .pld = {}};
  if (task.has_patient_dp()) {
    // Patient level: this clinic's own DP-SGD noise.
    const auto& p = task.patient_dp();
    const dp::SampledGaussianSteps steps{p.sampling_rate(), p.noise_multiplier(), static_cast<int64_t>(p.steps())};
    auto rdp = dp::SampledGaussianRdp(steps.sampling_rate, steps.noise_multiplier, steps.steps, orders);
    if (!rdp.ok() || !(p.clip() > 0.0) || steps.steps > 100000) {
      return decline(StrCat("its patient-level DP settings are unusable: ",
                            rdp.ok() ? StrCat("clip ", p.clip(), ", steps ", steps.steps) : rdp.status().message()));
    }
    charge.mechanism = "patient_dp_sgd";
    charge.parameters = nlohmann::json{
        {"sampling_rate", steps.sampling_rate},
        {"noise_multiplier", steps.noise_multiplier},
        {"steps", steps.steps},
        {"clip", p.clip()}}.dump();
    charge.rdp = *std::move(rdp);
    charge.pld = {steps};
    return RoundCost{.charge = std::move(charge), .decline = ""};
  }
  if (task.has_secagg() && !task.ddg().noiseless()) {
    // Clinic level: the noise the cohort adds as the task claims it (its
    // expected survivors each adding a share), which bounds what the round
    // reveals about any of this clinic's patients too.
    auto params = dp::DdgParamsOf(task.ddg());
    if (!params.ok()) return decline(StrCat("its DP settings are unusable: ", params.status().message()));
    auto rdp = dp::DdgRdp(*params, static_cast<int>(task.ddg().expected_clients()), 1, orders);
    if (!rdp.ok()) return decline(StrCat("its DP settings are unusable: ", rdp.status().message()));
    charge.mechanism = "distributed_discrete_gaussian";
    charge.parameters = nlohmann::json{{"noise_multiplier", task.ddg().noise_multiplier()},
                                       {"clip", task.ddg().clip()},
                                       {"expected_clients", task.ddg().expected_clients()},
                                       {"local_only", task.ddg().local_only()}}
                            .dump();
    charge.rdp = *std::move(rdp);
    return RoundCost{.charge = std::move(charge), .decline = ""};
  }
  if (!budgeted) return RoundCost{};
  // A trusted-aggregator round: the update leaves without this clinic's
  // noise, so no budget of its own can pay for it.
  return decline(
      "its update would leave this gateway without differential privacy of its own (a trusted-"
      "aggregator or DP-off round), which a gateway with a privacy budget does not take");
}

}  // namespace tinyfed::client::internal
