// What a round costs a gateway's own privacy ledger, from the task alone:
// a patient-level round by its DP-SGD, a clinic-level (distributed DP)
// round by the noise the cohort claims to add, and a round whose update
// would leave without noise of the gateway's own by nothing the gateway can
// account for, which a gateway with a budget declines.
#ifndef TINYFED_CLIENT_INTERNAL_ROUND_COST_H_
#define TINYFED_CLIENT_INTERNAL_ROUND_COST_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::client::internal {

struct RoundCost {
  std::optional<dp::PrivacyCharge> charge;  // to record before training
  std::string decline;                      // non-empty: why the gateway declines the round
};

// `orders`: the ledger's RDP orders. `budgeted`: the gateway has a finite budget.
RoundCost CostOfRound(const v1::RoundTask& task, const std::vector<double>& orders, bool budgeted);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_ROUND_COST_H_
