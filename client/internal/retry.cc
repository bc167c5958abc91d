#include "client/internal/retry.h"

#include <algorithm>

namespace tinyfed::client::internal {

absl::Status RetryWithBackoff(const RetryPolicy& policy, const std::function<absl::Status()>& attempt,
                              const std::function<double()>& uniform,
                              const std::function<void(absl::Duration)>& sleep) {
  absl::Duration backoff = policy.initial_backoff;
  for (int n = 1;; ++n) {
    absl::Status status = attempt();
    if (status.ok() || !Retryable(status) || n >= policy.max_attempts) return status;
    sleep(backoff * uniform());
    backoff = std::min(backoff * policy.multiplier, policy.max_backoff);
  }
}

}  // namespace tinyfed::client::internal
