// The operator port: what the tools operators already run read from a
// running aggregator, on a port of its own so that it can be firewalled
// apart from the gateways' gRPC port ([operator] in the config).
//
//   GET /metrics      Prometheus text format (metrics.h); no credential,
//                     since no series names a device
//   GET /             the status page (status_page.h)    the operator's
//   GET /status.json  the same as JSON                    credential
//
// The credential is the token in operator.token_file, sent as HTTP basic
// auth for the user "operator" (what a browser asks for) or as
// "Authorization: Bearer TOKEN"; without a token_file the status page is
// off. Everything else is refused: the port is read-only. HTTPS with the
// aggregator's certificate when [security] has one.
#ifndef TINYFED_AGGREGATOR_OPERATOR_SERVER_H_
#define TINYFED_AGGREGATOR_OPERATOR_SERVER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/metrics.h"

namespace tinyfed::aggregator {

class OperatorServer {
 public:
  // Listens on config.operator_port.listen (port 0 picks a free one).
  // `metrics` outlives the server. INVALID_ARGUMENT for a token file that
  // is empty or shorter than 16 characters.
  static absl::StatusOr<std::unique_ptr<OperatorServer>> Start(const Config& config, Metrics* metrics);
  ~OperatorServer();  // Shuts down.
  OperatorServer(const OperatorServer&) = delete;
  OperatorServer& operator=(const OperatorServer&) = delete;

  int port() const;
  void Shutdown();

 private:
  struct Impl;
  explicit OperatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_OPERATOR_SERVER_H_
