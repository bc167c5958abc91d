// Pure functions that plan a round: how many devices to admit, which SecAgg
// id each gets, the task a cohort trains under, what the round costs in
// privacy and whether the ledger can pay. No state, no clock, no randomness:
// the seeds come in as arguments, so a plan is a function of its inputs.
#ifndef TINYFED_AGGREGATOR_INTERNAL_ROUND_PLAN_H_
#define TINYFED_AGGREGATOR_INTERNAL_ROUND_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/secure_agg/params.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator::internal {

// SecAgg id of each of `n` devices (sorted by device id), a permutation of
// 0..n-1 drawn from `seed`, so an id says nothing about check-in time.
std::vector<uint32_t> ShuffledIds(size_t n, std::span<const uint8_t, 32> seed);

// The randomness a SecAgg+ round's plan needs, drawn by the caller.
struct SecAggSeeds {
  std::array<uint8_t, 32> graph{};  // the SecAgg+ neighbour graph
  dp::Seed rotation{};              // the DDG's random rotation
};

struct SecAggPlan {
  secagg::SecAggParams params;
  dp::DdgParams ddg;
  dp::Seed rotation_seed{};
  int min_survivors = 0;  // max(min_cohort, t): fewer and the round aborts
  v1::RoundTask task;     // what each member receives (without its own secagg_id)
  // A regional round's: it ends with the encoded sum, for the national round.
  bool regional = false;
};

// The plan of SecAgg+ round `round_id` for `n` admitted devices, training
// model `model` whose head has `head_size` values, with the federation's
// resolved `encoding`. FAILED_PRECONDITION with the reason when no round of
// n devices fits (DDG settings, SecAgg+ parameters, fewer than min_survivors
// devices).
absl::StatusOr<SecAggPlan> PlanSecAggRound(const Config& config, int64_t round_id, int n, size_t head_size,
                                           const Encoding& encoding, const v1::ModelRef& model,
                                           const SecAggSeeds& seeds);

// The plan of regional round `round_id` for `n` admitted gateways, their
// part of national round `national.round_id`: the national task's model,
// training, patient-level DP and encoding (rotation seed, scale, bits,
// clip, noise: the clinics' updates must add up to the national sum), under
// this region's own SecAgg+ graph. Nothing is charged here: the national
// aggregator accounts for the whole federation. FAILED_PRECONDITION when no
// round of n gateways fits.
absl::StatusOr<SecAggPlan> PlanRegionalRound(const Config& config, int64_t round_id, int n,
                                             const v1::RoundTask& national, std::span<const uint8_t, 32> graph_seed);

// The task of a round without SecAgg+ (a trusted aggregator).
v1::RoundTask PlanPlainRound(const Config& config, int64_t round_id, int n, const v1::ModelRef& model);

// What SecAgg+ round `round_id` costs with `survivors` clinics in its sum:
// every patient's DP-SGD steps (patient unit) or the distributed discrete
// Gaussian of the sum (clinic unit), at the ledger's RDP `orders`.
absl::StatusOr<dp::PrivacyCharge> SecAggRoundCharge(const Config& config, int64_t round_id, double z,
                                                    const dp::DdgParams& ddg, int survivors,
                                                    const std::vector<double>& orders);

// What a round with central noise (dp.mode = central) costs: one Gaussian
// release of the sum.
absl::StatusOr<dp::PrivacyCharge> CentralRoundCharge(const Config& config, int64_t round_id, double z, int survivors,
                                                     const std::vector<double>& orders);

// OK if the ledger can pay for `charge` within dp.epsilon_budget;
// RESOURCE_EXHAUSTED saying what epsilon it would reach otherwise.
absl::Status CheckBudget(const Config& config, const dp::PrivacyLedger& ledger, const dp::PrivacyCharge& charge);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_ROUND_PLAN_H_
