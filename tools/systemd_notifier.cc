#include "tools/systemd_notifier.h"

#include <string>

#include <systemd/sd-daemon.h>

namespace tinyfed::tools {

SystemdNotifier::SystemdNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0 && usec > 0) {
    interval_ = absl::Microseconds(static_cast<int64_t>(usec)) / 2;
  }
}

void SystemdNotifier::Ready(std::string_view status) {
  sd_notify(0, ("READY=1\nSTATUS=" + std::string(status)).c_str());
}

void SystemdNotifier::Status(std::string_view status) { sd_notify(0, ("STATUS=" + std::string(status)).c_str()); }

void SystemdNotifier::Stopping(std::string_view status) {
  sd_notify(0, ("STOPPING=1\nSTATUS=" + std::string(status)).c_str());
}

void SystemdNotifier::KeepAlive(absl::Time now) {
  if (interval_ == absl::InfiniteDuration() || now - last_ < interval_) return;
  sd_notify(0, "WATCHDOG=1");
  last_ = now;
}

}  // namespace tinyfed::tools
