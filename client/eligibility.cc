#include "tinyfed/client/eligibility.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tinyfed::client {

std::string WhyIneligible(const EligibilityPolicy& p, const DeviceConditions& c, absl::Time now, absl::TimeZone zone) {
  std::vector<std::string> why;
  if (!c.mains_power) {
    if (p.mains_power_only) why.push_back("on battery power; rounds only on mains power");
    if (c.battery < p.min_battery) {
      why.push_back(absl::StrFormat("battery at %.0f %%, below %.0f %%", 100 * c.battery, 100 * p.min_battery));
    }
  }
  if (p.unmetered_only && !c.unmetered_link) why.push_back("on a metered link");
  if (p.idle_only && !c.idle) why.push_back("the gateway is in use");
  if (p.window_start_hour != p.window_end_hour) {
    const int hour = absl::ToCivilHour(now, zone).hour();
    const bool inside = p.window_start_hour < p.window_end_hour
                            ? hour >= p.window_start_hour && hour < p.window_end_hour
                            : hour >= p.window_start_hour || hour < p.window_end_hour;
    if (!inside) {
      why.push_back(absl::StrFormat("%02d:00 is outside the window %02d:00-%02d:00", hour, p.window_start_hour,
                                    p.window_end_hour));
    }
  }
  return absl::StrJoin(why, "; ");
}

}  // namespace tinyfed::client
