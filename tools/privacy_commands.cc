// `tinyfed privacy ...`: the accountant from the command line.
#include <fmt/format.h>

#include <cmath>

#include "CLI/CLI.hpp"
#include "tinyfed/dp/pld_accountant.h"
#include "tinyfed/dp/rdp_accountant.h"
#include "tinyfed/sim/privacy_plan.h"
#include "tinyfed/sim/scenario.h"
#include "tinyfed/sim/simulation.h"
#include "tools/commands.h"
#include <nlohmann/json.hpp>

namespace tinyfed::tools {
namespace {

struct PrivacyFlags {
  double sampling_rate = 0.0;
  double noise_multiplier = 0.0;
  double delta = 0.0;
  double epsilon = 0.0;
  int64_t steps = 0;
  std::string accountant = "pld";
  bool json = false;
};

void AddCommon(CLI::App* cmd, PrivacyFlags* f) {
  cmd->add_option("--sampling-rate", f->sampling_rate, "probability q that a participant joins a step, in (0, 1]")
      ->required();
  cmd->add_option("--steps", f->steps, "number of steps (rounds)")->required();
  cmd->add_option("--delta", f->delta, "delta, in (0, 1)")->required();
  cmd->add_option("--accountant", f->accountant,
                  "pld (privacy loss distribution, the tighter) or rdp (Renyi DP); both are upper bounds")
      ->check(CLI::IsMember({"pld", "rdp"}));
  cmd->add_flag("--json", f->json, "print JSON");
}

}  // namespace

void AddPrivacyCommands(CLI::App* app) {
  auto* privacy =
      app->add_subcommand("privacy", "differential privacy accounting for the Poisson-sampled Gaussian (PLD or RDP)");
  privacy->require_subcommand(1);
  auto flags = std::make_shared<PrivacyFlags>();

  auto* epsilon = privacy->add_subcommand("epsilon", "epsilon spent by T steps of the sampled Gaussian");
  AddCommon(epsilon, flags.get());
  epsilon->add_option("--noise-multiplier", flags->noise_multiplier, "noise stddev / clip norm, > 0")->required();
  epsilon->callback([flags] {
    if (flags->accountant == "pld") {
      const dp::SampledGaussianSteps steps{flags->sampling_rate, flags->noise_multiplier, flags->steps};
      auto eps = dp::PldEpsilon({&steps, 1}, flags->delta);
      if (!eps.ok()) throw CommandError(eps.status());
      if (flags->json) {
        fmt::print("{}\n", nlohmann::json{{"epsilon", *eps}, {"accountant", "pld"}}.dump());
      } else {
        fmt::print("epsilon {:.6f} (delta {}, PLD accountant)\n", *eps, flags->delta);
      }
      return;
    }
    const auto orders = dp::DefaultOrders();
    auto rdp = dp::SampledGaussianRdp(flags->sampling_rate, flags->noise_multiplier, flags->steps, orders);
    if (!rdp.ok()) throw CommandError(rdp.status());
    auto spent = dp::EpsilonFromRdp(orders, *rdp, flags->delta);
    if (!spent.ok()) throw CommandError(spent.status());
    if (flags->json) {
      fmt::print("{}\n",
                 nlohmann::json{{"epsilon", spent->epsilon}, {"accountant", "rdp"}, {"order", spent->order}}.dump());
    } else {
      fmt::print("epsilon {:.6f} at RDP order {} (delta {}, RDP accountant)\n", spent->epsilon, spent->order,
                 flags->delta);
    }
  });

  auto* plan = privacy->add_subcommand("plan", "what a scenario's DP settings will spend, and how loud the noise is");
  auto scenario_file = std::make_shared<std::string>();
  plan->add_option("--scenario", *scenario_file, "scenario TOML file")->required()->check(CLI::ExistingFile);
  plan->add_flag("--json", flags->json, "print JSON");
  plan->callback([flags, scenario_file] {
    auto scenario = sim::ReadScenario(*scenario_file);
    if (!scenario.ok()) throw CommandError(scenario.status());
    auto shape = sim::DescribeFederation(*scenario);
    if (!shape.ok()) throw CommandError(shape.status());
    auto p = sim::PlanPrivacy(*scenario, *shape);
    if (!p.ok()) throw CommandError(p.status());
    if (!flags->json) {
      fmt::print("{}", sim::FormatPrivacyPlan(*p));
      return;
    }
    fmt::print("{}\n", nlohmann::json{{"unit", p->unit},
                                      {"mechanism", p->mechanism},
                                      {"accountant", p->accountant},
                                      {"noise_multiplier", p->noise_multiplier},
                                      {"bits", p->bits},
                                      {"epsilon", p->epsilon},
                                      {"delta", p->delta},
                                      {"rounds", p->rounds},
                                      {"steps_per_round", p->steps_per_round},
                                      {"sampling_rate", p->sampling_rate},
                                      {"head_parameters", p->head_parameters},
                                      {"expected_survivors", p->expected_survivors},
                                      {"smallest_clinic", p->smallest_clinic},
                                      {"median_clinic", p->median_clinic},
                                      {"step_noise_smallest", p->step_noise_smallest},
                                      {"step_noise_median", p->step_noise_median},
                                      {"round_noise", p->round_noise}}
                           .dump());
  });

  auto* noise = privacy->add_subcommand("noise", "noise multiplier that keeps T steps within epsilon");
  AddCommon(noise, flags.get());
  noise->add_option("--epsilon", flags->epsilon, "target epsilon, > 0")->required();
  noise->callback([flags] {
    auto z = flags->accountant == "pld"
                 ? dp::PldNoiseMultiplierForEpsilon(flags->sampling_rate, flags->steps, flags->delta, flags->epsilon)
                 : dp::NoiseMultiplierForEpsilon(flags->sampling_rate, flags->steps, flags->delta, flags->epsilon,
                                                 dp::DefaultOrders());
    if (!z.ok()) throw CommandError(z.status());
    if (flags->json) {
      fmt::print("{}\n", nlohmann::json{{"noise_multiplier", *z}}.dump());
    } else {
      // Rounded up: the printed value, used as given, stays within the target.
      fmt::print("noise multiplier {:.4f}\n", std::ceil(*z * 1e4) / 1e4);
    }
  });
}

}  // namespace tinyfed::tools
