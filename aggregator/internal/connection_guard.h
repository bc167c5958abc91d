// The aggregator's listening socket, and the connections it lets gRPC have.
//
// gRPC (1.51) accepts as many connections as the process has descriptors,
// and keeps a connection that never completes a call for minutes: a few
// hundred idle TLS or bare TCP connections from anyone took the descriptors
// that publishing a round needs. The guard accepts connections itself and
// hands them to gRPC (ExternalConnectionAcceptor), so that:
//   - at most `max_connections` are in use; the process's descriptor limit
//     must leave room for that many plus the aggregator's own files (one
//     that is shut down keeps its descriptor until gRPC notices and closes
//     it);
//   - a connection that has carried no authenticated call within
//     `auth_timeout` of being accepted is shut down (bare TCP, a stalled TLS
//     handshake, idle or half-open streams from nobody in particular), and
//     when the cap is reached a new connection displaces the oldest such one;
//   - an enrolled device keeps at most kMaxConnectionsPerDevice connections:
//     opening more shuts down its oldest.
// A connection is identified by its peer address, which gRPC reports as
// context.peer(). Shutting a connection down (shutdown(2) on its socket)
// makes gRPC close it; only the guard's thread creates sockets in the
// aggregator, so a descriptor it checked is still the socket it checked.
// Thread-safe.
#ifndef TINYFED_AGGREGATOR_INTERNAL_CONNECTION_GUARD_H_
#define TINYFED_AGGREGATOR_INTERNAL_CONNECTION_GUARD_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc::experimental {
class ExternalConnectionAcceptor;
}

namespace tinyfed::aggregator::internal {

struct ConnectionLimits {
  int max_connections = 512;
  absl::Duration auth_timeout = absl::Seconds(10);
};

class ConnectionGuard {
 public:
  static constexpr int kMaxConnectionsPerDevice = 4;
  // Descriptors kept for the aggregator's own files (databases, models,
  // gRPC's internal ones) beyond the connections.
  static constexpr int kReservedDescriptors = 128;

  // Binds and listens on "host:port" (port 0: a free one). Raises the soft
  // descriptor limit to the hard one if it must; FAILED_PRECONDITION when
  // even that leaves no room for max_connections.
  static absl::StatusOr<std::unique_ptr<ConnectionGuard>> Listen(const std::string& address,
                                                                 const ConnectionLimits& limits);
  ~ConnectionGuard();  // Stops.
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;

  int port() const { return port_; }
  // Starts accepting, handing connections to `acceptor` (which must outlive
  // Stop, and whose server must be started).
  void Start(grpc::experimental::ExternalConnectionAcceptor* acceptor);
  // Stops accepting and closes the listening socket; connections already
  // handed over stay gRPC's.
  void Stop();

  // The connection of `peer` (context.peer()) carried a call authenticated
  // as `device`.
  void Authenticated(std::string_view peer, std::string_view device);

  int open_connections() const;

 private:
  struct Connection {
    int fd = -1;
    ino_t inode = 0;  // tells the socket from whatever reuses its number later
    std::string peer;
    absl::Time accepted;
    std::string device;  // empty until a call on it is authenticated
  };
  ConnectionGuard(int listen_fd, int port, const ConnectionLimits& limits);
  void AcceptLoop();
  enum class Accepted { kAll, kStarved };
  // Sweeps, then accepts what is pending (if `pending`); kStarved when out
  // of descriptors with no spare to refuse a connection with.
  Accepted SweepAndAccept(absl::Time now, bool pending) ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets connections gRPC closed; shuts down those past auth_timeout.
  void SweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void ShutDown(const Connection& c);

  const int listen_fd_;
  const int port_;
  const ConnectionLimits limits_;
  int wake_fd_ = -1;   // an eventfd that ends the accept loop
  int spare_fd_ = -1;  // given up to refuse a connection when descriptors run out
  grpc::experimental::ExternalConnectionAcceptor* acceptor_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stopped_{false};

  mutable absl::Mutex mu_;
  std::list<Connection> connections_ ABSL_GUARDED_BY(mu_);  // oldest first
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time refusal_logged_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_CONNECTION_GUARD_H_
