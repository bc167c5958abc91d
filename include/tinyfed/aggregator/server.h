// The aggregator's gRPC server: the round engine behind the tinyfed.v1
// Aggregator service. Each method reads its request as raw bytes, refuses one
// over the method's limit before parsing it (RESOURCE_EXHAUSTED), parses it
// (INVALID_ARGUMENT if malformed) and hands it to the engine, whose
// absl::Status codes become the gRPC status. A background thread ticks the
// engine so phases close at their deadlines.
#ifndef TINYFED_AGGREGATOR_SERVER_H_
#define TINYFED_AGGREGATOR_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/round_engine.h"

namespace tinyfed::aggregator {

class AggregatorServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one). The engine
  // must outlive the server. Plaintext for now: TLS and device identity are
  // the security issue's.
  static absl::StatusOr<std::unique_ptr<AggregatorServer>> Start(RoundEngine* engine, const std::string& address);
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
