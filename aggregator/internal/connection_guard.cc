#include "aggregator/internal/connection_guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/server_builder.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace tinyfed::aggregator::internal {
namespace {

using absl::StrCat;

// As gRPC formats context.peer(): "ipv4:1.2.3.4:5" or "ipv6:[::1]:5".
std::string PeerName(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    return StrCat("ipv4:", host, ":", ntohs(v4->sin_port));
  }
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
  // A dual-stack socket ("[::]:7443") sees IPv4 peers as ::ffff:a.b.c.d,
  // which gRPC reports as ipv4.
  if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
    inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], host, sizeof(host));
    return StrCat("ipv4:", host, ":", ntohs(v6->sin6_port));
  }
  inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
  return StrCat("ipv6:[", host, "]:", ntohs(v6->sin6_port));
}

absl::Status Errno(const std::string& what) { return absl::UnavailableError(StrCat(what, ": ", std::strerror(errno))); }

// Room for the connections and the aggregator's own files, raising the soft
// limit towards the hard one if need be.
absl::Status EnsureDescriptors(int max_connections) {
  const rlim_t needed = static_cast<rlim_t>(max_connections) + ConnectionGuard::kReservedDescriptors;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return Errno("getrlimit(RLIMIT_NOFILE)");
  if (limit.rlim_cur >= needed) return absl::OkStatus();
  if (limit.rlim_max >= needed) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(StrCat(
      "security.max_connections = ", max_connections, " needs ", needed, " file descriptors, but the limit is ",
      limit.rlim_max, " (ulimit -n, LimitNOFILE= in a systemd unit): raise it or lower security.max_connections"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionGuard>> ConnectionGuard::Listen(const std::string& address,
                                                                         const ConnectionLimits& limits) {
  if (limits.max_connections < 1) {
    return absl::InvalidArgumentError(StrCat("max_connections must be at least 1, got ", limits.max_connections));
  }
  if (auto s = EnsureDescriptors(limits.max_connections); !s.ok()) return s;
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(StrCat("listen address '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(StrCat("listen address '", address, "': ", gai_strerror(rc)));
  }
  int fd = -1;
  absl::Status last = absl::UnavailableError(StrCat("cannot listen on ", address));
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
      last = Errno(StrCat("cannot listen on ", address));
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return last;
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                                                    : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  auto guard = std::unique_ptr<ConnectionGuard>(new ConnectionGuard(fd, bound_port, limits));
  guard->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (guard->wake_fd_ < 0) return Errno("eventfd");
  guard->spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return guard;
}

ConnectionGuard::ConnectionGuard(int listen_fd, int port, const ConnectionLimits& limits)
    : listen_fd_(listen_fd), port_(port), limits_(limits) {}

ConnectionGuard::~ConnectionGuard() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

void ConnectionGuard::Start(grpc::experimental::ExternalConnectionAcceptor* acceptor) {
  acceptor_ = acceptor;
  thread_ = std::thread([this] { AcceptLoop(); });
}

void ConnectionGuard::Stop() {
  if (stopped_.exchange(true)) return;
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
}

int ConnectionGuard::open_connections() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(connections_.size());
}

void ConnectionGuard::ShutDown(const Connection& c) { ::shutdown(c.fd, SHUT_RDWR); }

void ConnectionGuard::SweepLocked(absl::Time now) {
  int timed_out = 0;
  for (auto it = connections_.begin(); it != connections_.end();) {
    struct stat st {};
    if (::fstat(it->fd, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != it->inode) {
      it = connections_.erase(it);  // gRPC closed it
      continue;
    }
    if (it->device.empty() && now - it->accepted > limits_.auth_timeout) {
      ShutDown(*it);
      ++timed_out;
      it = connections_.erase(it);
      continue;
    }
    ++it;
  }
  refused_ += timed_out;
  if (refused_ > 0 && now - refusal_logged_ >= absl::Minutes(1)) {
    spdlog::warn(
        "connections: shut down or refused {} in the last minute (no authenticated call within {}, past "
        "the cap of {} in security.max_connections, or past {} of one device); {} open",
        refused_, absl::FormatDuration(limits_.auth_timeout), limits_.max_connections, kMaxConnectionsPerDevice,
        connections_.size());
    refused_ = 0;
    refusal_logged_ = now;
  }
}

void ConnectionGuard::AcceptLoop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (!stopped_.load()) {
    const int ready = ::poll(fds, 2, 1000);
    const absl::Time now = absl::Now();
    if (ready < 0 && errno != EINTR) {
      spdlog::error("connections: poll: {}", std::strerror(errno));
      break;
    }
    if (fds[1].revents != 0) break;
    if (SweepAndAccept(now, ready > 0 && (fds[0].revents & POLLIN) != 0) == Accepted::kStarved) {
      ::poll(nullptr, 0, 100);  // out of descriptors, even the spare: wait instead of spinning
    }
  }
}

ConnectionGuard::Accepted ConnectionGuard::SweepAndAccept(absl::Time now, bool pending) {
  absl::MutexLock lock(&mu_);
  SweepLocked(now);
  if (!pending) return Accepted::kAll;
  for (int burst = 0; burst < 64; ++burst) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
      // Out of descriptors all the same (another part of the process took
      // them): the pending connection would keep the listener readable and
      // this loop spinning. The spare descriptor makes room to refuse it.
      // Without a spare (taken while it was closed), wait instead of spinning.
      const int refused =
          spare_fd_ >= 0 && ::close(spare_fd_) == 0 ? ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC) : -1;
      if (refused >= 0) ::close(refused);
      spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (refused < 0) return Accepted::kStarved;
      ++refused_;
      continue;
    }
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        spdlog::error("connections: accept: {}", std::strerror(errno));
      }
      break;
    }
    if (static_cast<int>(connections_.size()) >= limits_.max_connections) {
      const auto idle =
          std::find_if(connections_.begin(), connections_.end(), [](const Connection& c) { return c.device.empty(); });
      ++refused_;
      if (idle == connections_.end()) {
        ::close(fd);  // every connection carries a device's calls: the newcomer waits
        continue;
      }
      ShutDown(*idle);
      connections_.erase(idle);
    }
    struct stat st {};
    ::fstat(fd, &st);
    connections_.push_back({.fd = fd, .inode = st.st_ino, .peer = PeerName(peer), .accepted = now, .device = ""});
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters p;
    p.listener_fd = listen_fd_;
    p.fd = fd;
    acceptor_->HandleNewConnection(&p);
  }
  return Accepted::kAll;
}

void ConnectionGuard::Authenticated(std::string_view peer, std::string_view device) {
  absl::MutexLock lock(&mu_);
  int of_device = 0;
  auto oldest = connections_.end();
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->peer == peer && it->device.empty()) it->device = std::string(device);
    if (it->device == device) {
      if (oldest == connections_.end()) oldest = it;
      ++of_device;
    }
  }
  if (of_device > kMaxConnectionsPerDevice && oldest != connections_.end() && oldest->peer != peer) {
    ++refused_;
    ShutDown(*oldest);
    connections_.erase(oldest);
  }
}

}  // namespace tinyfed::aggregator::internal
