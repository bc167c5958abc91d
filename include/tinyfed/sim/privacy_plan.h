// What a scenario's privacy settings will do, before it runs (`tinyfed
// privacy plan --scenario FILE`): the noise multiplier and SecAgg+ bits the
// aggregator will choose, the epsilon the plan spends, and the noise's standard deviation
// (L2 over the head) relative to an update at the clip norm, where it is
// added and on the round's mean. A ratio well above 1 on the round's mean
// means the federation learns mostly noise.
#ifndef TINYFED_SIM_PRIVACY_PLAN_H_
#define TINYFED_SIM_PRIVACY_PLAN_H_

#include <string>

#include "absl/status/statusor.h"
#include "tinyfed/sim/scenario.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim {

struct PrivacyPlan {
  std::string unit;        // "patient", "clinic" or "none"
  std::string mechanism;   // e.g. "DP-SGD at each clinic (Poisson-subsampled Gaussian)"
  std::string accountant;  // "pld" or "rdp"; "none" without DP
  double noise_multiplier = 0.0;
  int bits = 0;          // SecAgg+ bits per value (chosen when dp.bits = 0); 0 without SecAgg+
  double epsilon = 0.0;  // after all rounds, a clinic in every one
  double delta = 0.0;
  int64_t rounds = 0;
  int64_t steps_per_round = 0;  // patient: DP-SGD steps a clinic takes per round
  double sampling_rate = 0.0;   // patient
  size_t head_parameters = 0;
  int expected_survivors = 0;                     // cohort_size * (1 - max_dropout)
  size_t smallest_clinic = 0, median_clinic = 0;  // training samples
  // Noise stddev over the head / clip where it is added. Patient: on one
  // DP-SGD step's mean gradient at the smallest and the median clinic.
  // Clinic: on one clinic's update (its share of the noise).
  double step_noise_smallest = 0.0, step_noise_median = 0.0;
  // On the round's mean update over expected_survivors clinics (patient:
  // median clinics, signal adding up over the steps and clinics).
  double round_noise = 0.0;
};

absl::StatusOr<PrivacyPlan> PlanPrivacy(const Scenario& scenario, const FederationShape& shape);
std::string FormatPrivacyPlan(const PrivacyPlan& plan);

}  // namespace tinyfed::sim

#endif  // TINYFED_SIM_PRIVACY_PLAN_H_
