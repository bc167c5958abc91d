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
// count since, so a flood cannot flood the log; every call and refusal is
// counted in the engine's metrics. A background thread ticks the engine so
// phases close at their deadlines.
//
// The same port serves grpc.health.v1.Health (unauthenticated, as probes
// expect): SERVING from Start(), since the engine has loaded its state by
// then, and NOT_SERVING once Drain() is called.
#ifndef TINYFED_AGGREGATOR_SERVER_H_
#define TINYFED_AGGREGATOR_SERVER_H_

#include <memory>
#include <string>
#include <vector>

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
  // Takes requests_per_minute and max_concurrent_calls of `fresh` (a
  // re-read config, on SIGHUP) from the next call on; returns what changed.
  std::vector<std::string> ReloadLimits(const SecurityConfig& fresh);
  // Health turns NOT_SERVING, so that probes and load balancers send no new
  // work here; calls go on being answered until Shutdown().
  void Drain();
  // Stops accepting calls, finishes those in flight, stops the ticker.
  void Shutdown();

 private:
  struct Impl;
  explicit AggregatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_SERVER_H_
