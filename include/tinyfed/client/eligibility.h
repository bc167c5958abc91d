// When a gateway takes part in rounds: its own software says what it knows
// of its power, link and use (DeviceConditions), and a policy
// (EligibilityPolicy, in ClientConfig) says what it takes. The client asks
// before each round; gateway software and the simulator may ask too.
#ifndef TINYFED_CLIENT_ELIGIBILITY_H_
#define TINYFED_CLIENT_ELIGIBILITY_H_

#include <string>

#include "absl/time/time.h"

namespace tinyfed::client {

// What the gateway's own software knows of its circumstances now
// (ClientHooks::conditions).
struct DeviceConditions {
  bool mains_power = true;
  double battery = 1.0;  // charge in [0, 1], read when not on mains power
  bool unmetered_link = true;
  bool idle = true;  // nobody is using the gateway
};

// When the gateway takes part in rounds: a round costs minutes of CPU and a
// model download, which a solar-powered gateway or one on a metered link
// spends only when it can. A round it is not eligible for is declined before
// any call (RoundOutcome::kIneligible, saying why).
struct EligibilityPolicy {
  bool mains_power_only = false;
  double min_battery = 0.0;  // on battery power, take part only at this charge or more
  bool unmetered_only = false;
  bool idle_only = false;
  // Local hours [window_start_hour, window_end_hour), wrapping midnight
  // (22 to 6 is the night); equal: any hour.
  int window_start_hour = 0;
  int window_end_hour = 0;
};

// Empty if a gateway under `policy` may take part at `now` (local hours in
// `zone`); otherwise every reason, joined by "; ", in words for its log and
// telemetry.
std::string WhyIneligible(const EligibilityPolicy& policy, const DeviceConditions& conditions, absl::Time now,
                          absl::TimeZone zone);

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_ELIGIBILITY_H_
