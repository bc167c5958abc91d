// How a client reaches the aggregator: the five calls of the round service.
// The gRPC transport is the one gateways use; the simulator plugs in an
// in-process one that calls the round engine directly.
#ifndef TINYFED_CLIENT_TRANSPORT_H_
#define TINYFED_CLIENT_TRANSPORT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::client {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) = 0;
  virtual absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& request) = 0;
  virtual absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& request) = 0;
  virtual absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& request) = 0;
  virtual absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& request) = 0;
};

// Every call has a deadline; calls that fail with UNAVAILABLE or
// DEADLINE_EXCEEDED (a lost link, an aggregator restarting) are retried with
// exponential backoff and full jitter. Every call of the service is safe to
// repeat, so a retry never double-counts.
struct RetryPolicy {
  absl::Duration call_deadline = absl::Seconds(10);
  int max_attempts = 6;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  double multiplier = 2.0;
};

// A plaintext gRPC channel to "host:port"; TLS comes with the security issue.
std::unique_ptr<Transport> ConnectGrpc(const std::string& address, const RetryPolicy& policy = {});

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_TRANSPORT_H_
