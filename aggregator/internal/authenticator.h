// Signed requests (service.proto, "Device authentication"): the enrolled
// device's key, a timestamp within the skew window, a rate per device and a
// nonce used once.
//
// The rate is checked before the nonce is remembered, so requests over a
// device's rate cost no memory; a device's remembered nonces are those of
// its accepted requests within twice the skew window (older ones could not
// pass the timestamp check again), so at most about
// requests_per_minute * (2 * max_clock_skew in minutes + 1) per device, and
// devices are only those enrolled. Thread-safe.
#ifndef TINYFED_AGGREGATOR_INTERNAL_AUTHENTICATOR_H_
#define TINYFED_AGGREGATOR_INTERNAL_AUTHENTICATOR_H_

#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator::internal {

class Authenticator {
 public:
  Authenticator(DeviceRegistry* devices, const SecurityConfig& security) : devices_(devices), security_(security) {}

  // `method` is the full gRPC method name, `bytes` the request as sent,
  // `signature` the tinyfed-signature-bin metadata (nullopt if absent).
  // UNAUTHENTICATED for a missing or wrong signature, a stale timestamp or a
  // replay; PERMISSION_DENIED for a revoked device (from the registry);
  // RESOURCE_EXHAUSTED past requests_per_minute.
  absl::Status Authenticate(std::string_view method, std::string_view bytes, const v1::RequestHeader& header,
                            std::optional<std::string_view> signature, absl::Time now);

  // From the next request on (a reloaded config).
  void SetRequestsPerMinute(int requests_per_minute) { requests_per_minute_.store(requests_per_minute); }

  // Nonces remembered for `device`.
  size_t nonces_held(const std::string& device) const;

 private:
  struct DeviceState {
    std::set<std::string> nonces;
    std::deque<std::pair<absl::Time, std::string>> nonce_order;
    double tokens = -1.0;  // a full bucket at the first request
    absl::Time refilled;
  };
  DeviceRegistry* devices_;
  const SecurityConfig security_;
  std::atomic<int> requests_per_minute_{security_.requests_per_minute};
  mutable absl::Mutex mu_;
  std::map<std::string, DeviceState> devices_state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_AUTHENTICATOR_H_
