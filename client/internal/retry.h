// The transport's retry loop, apart from gRPC so that it can be tested on
// its own: an attempt that fails with UNAVAILABLE or DEADLINE_EXCEEDED (a
// lost link, an aggregator restarting) is repeated after a backoff that
// grows by policy.multiplier up to policy.max_backoff, with full jitter
// (each delay uniform in [0, backoff)), so that gateways that lost the link
// together do not come back together.
#ifndef TINYFED_CLIENT_INTERNAL_RETRY_H_
#define TINYFED_CLIENT_INTERNAL_RETRY_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tinyfed/client/transport.h"

namespace tinyfed::client::internal {

// Whether a failed call may be repeated: every call of the service is safe
// to repeat, but only these say nothing about the request itself.
inline bool Retryable(const absl::Status& s) { return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s); }

// `attempt` until it succeeds, fails with an error that is not Retryable,
// or policy.max_attempts are spent; the last status. `uniform` draws from
// [0, 1) for the jitter and `sleep` waits, both injected for tests.
absl::Status RetryWithBackoff(const RetryPolicy& policy, const std::function<absl::Status()>& attempt,
                              const std::function<double()>& uniform, const std::function<void(absl::Duration)>& sleep);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_RETRY_H_
