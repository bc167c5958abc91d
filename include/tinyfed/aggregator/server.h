// The aggregator's gRPC server: the round engine behind the tinyfed.v1
// Aggregator service, over TLS. Each call, in order:
//   1. over max_concurrent_calls in flight          -> RESOURCE_EXHAUSTED
//   2. over its method's size limit (before parsing) -> RESOURCE_EXHAUSTED
//   3. not a valid message                           -> INVALID_ARGUMENT
//   4. not signed by an enrolled device's key, a timestamp outside the skew
//      window, a nonce seen before (a replay)       -> UNAUTHENTICATED
//      a revoked device                               -> PERMISSION_DENIED
//   5. over the device's requests_per_minute         -> RESOURCE_EXHAUSTED
//   6. the round engine (or, for Enroll, the device registry), whose
//      absl::Status codes become the gRPC status.
// Refusals are logged at most once a minute per kind (and device), with the
// count since, so a flood cannot flood the log. A background thread ticks
// the engine so phases close at their deadlines.
#ifndef TINYFED_AGGREGATOR_SERVER_H_
#define TINYFED_AGGREGATOR_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/round_engine.h"

namespace tinyfed::aggregator {

class AggregatorServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one) with the
  // TLS certificate of `security`. Without one it refuses to start unless
  // `insecure` (tests only; logged as a warning). The
  // engine (with its device registry) must outlive the server.
  static absl::StatusOr<std::unique_ptr<AggregatorServer>> Start(RoundEngine* engine, const std::string& address,
                                                                 const SecurityConfig& security, bool insecure = false);
  ~AggregatorServer();  // Shuts down.
  AggregatorServer(const AggregatorServer&) = delete;
  AggregatorServer& operator=(const AggregatorServer&) = delete;

  int port() const;
  // Stops accepting calls, finishes those in flight, stops the ticker.
  void Shutdown();

 private:
  struct Impl;
  explicit AggregatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_SERVER_H_
