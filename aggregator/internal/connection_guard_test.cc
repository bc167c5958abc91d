#include "aggregator/internal/connection_guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace tinyfed::aggregator::internal {
namespace {

// Keeps the descriptors it is handed, as gRPC would.
class HoldingAcceptor : public grpc::experimental::ExternalConnectionAcceptor {
 public:
  void HandleNewConnection(NewConnectionParameters* p) override {
    std::lock_guard lock(mu_);
    fds_.push_back(p->fd);
  }
  ~HoldingAcceptor() override {
    for (int fd : fds_) ::close(fd);
  }

 private:
  std::mutex mu_;
  std::vector<int> fds_;
};

// An IPv4 client of a dual-stack listener, and its peer name as gRPC gives it.
int Connect(int port, std::string* peer) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return -1;
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
  *peer = absl::StrCat("ipv4:127.0.0.1:", ntohs(local.sin_port));
  return fd;
}

bool ClosedWithin(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char byte;
  return ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
}

// On a dual-stack listener IPv4 peers arrive as ::ffff:a.b.c.d, which gRPC
// names ipv4:a.b.c.d: an authenticated gateway's connection must be known by
// that name, or the guard would shut it down as one that authenticated nothing.
TEST(ConnectionGuard, AnAuthenticatedIpv4PeerOfADualStackListenerIsKept) {
  auto guard = ConnectionGuard::Listen("[::]:0", {.max_connections = 8, .auth_timeout = absl::Milliseconds(300)});
  if (!guard.ok()) GTEST_SKIP() << "no IPv6 on this machine: " << guard.status();
  HoldingAcceptor acceptor;
  (*guard)->Start(&acceptor);
  std::string gateway_peer, stranger_peer;
  const int gateway = Connect((*guard)->port(), &gateway_peer);
  const int stranger = Connect((*guard)->port(), &stranger_peer);
  ASSERT_GE(gateway, 0);
  ASSERT_GE(stranger, 0);
  // Both accepted before the gateway's first call is authenticated.
  for (int i = 0; i < 100 && (*guard)->open_connections() < 2; ++i) ::poll(nullptr, 0, 10);
  ASSERT_EQ((*guard)->open_connections(), 2);
  (*guard)->Authenticated(gateway_peer, "clinic-1");
  EXPECT_TRUE(ClosedWithin(stranger, 5000)) << "the unauthenticated connection was kept";
  EXPECT_FALSE(ClosedWithin(gateway, 1500)) << "the gateway's connection was shut down";
  EXPECT_EQ((*guard)->open_connections(), 1);
  (*guard)->Stop();
  ::close(gateway);
  ::close(stranger);
}

// With every descriptor of the process taken (by anything), a pending
// connection kept the listener readable: the loop would spin. The guard
// refuses it with a spare descriptor and goes on once descriptors are back.
TEST(ConnectionGuard, ConnectionsArriveWhenDescriptorsRunOutAreRefusedNotSpunOn) {
  auto guard = ConnectionGuard::Listen("127.0.0.1:0", {.max_connections = 8, .auth_timeout = absl::Seconds(60)});
  ASSERT_TRUE(guard.ok()) << guard.status();
  HoldingAcceptor acceptor;
  (*guard)->Start(&acceptor);
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  std::vector<int> hog;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) hog.push_back(fd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>((*guard)->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_TRUE(ClosedWithin(client, 3000)) << "the connection was neither accepted nor refused";
  for (int fd : hog) ::close(fd);
  ::close(client);
  std::string peer;
  const int after = Connect((*guard)->port(), &peer);
  ASSERT_GE(after, 0);
  for (int i = 0; i < 100 && (*guard)->open_connections() < 1; ++i) ::poll(nullptr, 0, 10);
  EXPECT_EQ((*guard)->open_connections(), 1);
  (*guard)->Stop();
  ::close(after);
}

}  // namespace
}  // namespace tinyfed::aggregator::internal
