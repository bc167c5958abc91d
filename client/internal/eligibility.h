// Whether the gateway may take part in a round now (ClientConfig::eligibility
// against ClientHooks::conditions and the clock), and if not, why, in words
// an operator reads in the gateway's log and telemetry.
#ifndef TINYFED_CLIENT_INTERNAL_ELIGIBILITY_H_
#define TINYFED_CLIENT_INTERNAL_ELIGIBILITY_H_

#include <string>

#include "absl/time/time.h"
#include "tinyfed/client/client.h"

namespace tinyfed::client::internal {

// Empty if eligible; otherwise every reason, joined by "; ".
std::string WhyIneligible(const EligibilityPolicy& policy, const DeviceConditions& now_conditions, absl::Time now,
                          absl::TimeZone zone);

// When to look again after declining: a policy's conditions change over
// minutes (a battery charging, a clinician done).
inline constexpr absl::Duration kIneligibleRetry = absl::Minutes(5);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_ELIGIBILITY_H_
