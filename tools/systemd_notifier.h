// Readiness, status and the watchdog for systemd (sd_notify(3)), so that a
// unit of Type=notify with WatchdogSec= knows when the aggregator or a
// gateway is ready and restarts one that hangs. Outside systemd
// (no NOTIFY_SOCKET) every call does nothing.
#ifndef TINYFED_TOOLS_SYSTEMD_NOTIFIER_H_
#define TINYFED_TOOLS_SYSTEMD_NOTIFIER_H_

#include <cstdint>
#include <string_view>

#include "absl/time/time.h"

namespace tinyfed::tools {

class SystemdNotifier {
 public:
  SystemdNotifier();  // reads WATCHDOG_USEC for this process

  void Ready(std::string_view status);
  void Status(std::string_view status);
  void Stopping(std::string_view status);
  // Call from the main loop as often as you like: pings at half the
  // watchdog interval. The loop must only get here while it makes progress.
  void KeepAlive(absl::Time now);

 private:
  absl::Duration interval_ = absl::InfiniteDuration();  // no watchdog
  absl::Time last_ = absl::InfinitePast();
};

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_SYSTEMD_NOTIFIER_H_
