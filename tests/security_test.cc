// Transport security and device identity over real gRPC: TLS or nothing
// unless --insecure, enrollment tokens, signed requests (forgery, replay,
// clock skew), revocation, rate limits logged once.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "aggregator/testing/self_signed.h"
#include "aggregator/testing/test_federation.h"
#include "base/testing/fake_env.h"
#include "models/testing/tiny_classifier.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/client/client.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/v1/service.grpc.pb.h"

namespace tinyfed::aggregator {
namespace {

using grpc::StatusCode;

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tinyfed-security-" + std::to_string(getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto federation = testing::WriteTestFederation(dir_, "security-test");
    ASSERT_TRUE(federation.ok()) << federation.status();
    config_ = federation->config;
    pinned_root_ = federation->pinned_root;
    config_.cohort_size = 5;
    config_.min_cohort = 3;
    auto engine = RoundEngine::Create(config_, env_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    devices_ = engine_->devices();
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Fills the next round's cohort from elsewhere, so that a test client's
  // check-in updates its model and returns (not selected) instead of
  // waiting for peers.
  void FillCohort() {
    for (int i = 0; i < config_.cohort_size; ++i) {
      v1::CheckInRequest r;
      r.mutable_header()->set_device_id("filler-" + std::to_string(i));
      r.mutable_header()->set_phase(v1::PHASE_CHECK_IN);
      ASSERT_TRUE(engine_->CheckIn(r).ok());
    }
  }

  void Serve(bool insecure = true) {
    auto server = AggregatorServer::Start(engine_.get(), config_.listen, config_.security, insecure);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
    stub_ = v1::Aggregator::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  grpc::Status Enroll(const v1::EnrollRequest& r) {
    grpc::ClientContext c;
    v1::EnrollResponse out;
    return stub_->Enroll(&c, r, &out);
  }

  struct Call {
    v1::CheckInRequest request;
    std::string signature;
  };
  // A check-in as `device` signed by `key`, stamped `skew` off the clock.
  static Call SignedCheckIn(const std::string& device, const models::SigningKey& key,
                            absl::Duration skew = absl::ZeroDuration()) {
    Call call;
    v1::RequestHeader* h = call.request.mutable_header();
    h->set_device_id(device);
    h->set_phase(v1::PHASE_CHECK_IN);
    auth::StampHeader(h, absl::Now() + skew);
    call.signature = auth::SignRequest("/tinyfed.v1.Aggregator/CheckIn", call.request.SerializeAsString(), key);
    return call;
  }
  grpc::Status Send(const Call& call, v1::CheckInResponse* out = nullptr) {
    grpc::ClientContext c;
    if (!call.signature.empty()) c.AddMetadata(proto::kSignatureMetadataKey, call.signature);
    v1::CheckInResponse ignored;
    return stub_->CheckIn(&c, call.request, out ? out : &ignored);
  }

  std::filesystem::path dir_;
  Config config_;
  std::filesystem::path pinned_root_;
  // The engine's clock, on the wall clock's time (requests carry real
  // timestamps) but moving only when a test says: token expiry.
  base::testing::FakeEnv env_{1, absl::Now()};
  std::unique_ptr<RoundEngine> engine_;
  DeviceRegistry* devices_ = nullptr;  // the engine's
  std::unique_ptr<AggregatorServer> server_;
  std::string address_;
  std::unique_ptr<v1::Aggregator::Stub> stub_;
};

TEST_F(SecurityTest, PlaintextOnlyWithInsecureOnBothSides) {
  auto refused = AggregatorServer::Start(engine_.get(), config_.listen, config_.security, false);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("plaintext needs --insecure"), std::string::npos) << refused.status();
  // And a gateway speaks TLS unless told otherwise: a plaintext server does
  // not get its calls.
  Serve(/*insecure=*/true);
  FillCohort();
  client::ClientConfig cc;
  cc.device_id = "clinic-1";
  cc.data_dir = dir_ / "gateway";
  cc.trusted_root = pinned_root_;
  cc.enrollment_token = *devices_->IssueToken("clinic-1", absl::Hours(1));
  client::RetryPolicy once;
  once.max_attempts = 1;
  auto tls = client::Client::Create(cc, std::move(*client::ConnectGrpc(address_, {}, once)));
  ASSERT_TRUE(tls.ok());
  EXPECT_EQ((*tls)->ParticipateOnce().status().code(), absl::StatusCode::kUnavailable);
  tls->reset();  // one client per data directory at a time
  auto plain =
      client::Client::Create(cc, std::move(*client::ConnectGrpc(address_, client::ChannelSecurity::Plaintext())));
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE((*plain)->ParticipateOnce().ok());
}

TEST_F(SecurityTest, TlsServesGatewaysThatTrustItsCaAndNothingElse) {
  // A self-signed certificate for 127.0.0.1, as an operator's CA would sign.
  const auto cert = dir_ / "cert.pem", key = dir_ / "key.pem";
  ASSERT_TRUE(testing::WriteSelfSignedCertificate(dir_, cert, key)) << "see " << (dir_ / "openssl.log");
  config_.security.tls_certificate = cert;
  config_.security.tls_private_key = key;
  Serve(/*insecure=*/false);
  FillCohort();
  auto token = devices_->IssueToken("clinic-tls", absl::Hours(1));
  ASSERT_TRUE(token.ok());

  client::ClientConfig cc;
  cc.device_id = "clinic-tls";
  cc.data_dir = dir_ / "gateway";
  cc.trusted_root = pinned_root_;
  cc.enrollment_token = *token;
  client::RetryPolicy quick;
  quick.max_attempts = 1;
  quick.call_deadline = absl::Seconds(5);
  // A plaintext client cannot talk to the TLS port.
  {
    auto plain = client::Client::Create(
        cc, std::move(*client::ConnectGrpc(address_, client::ChannelSecurity::Plaintext(), quick)));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ((*plain)->ParticipateOnce().status().code(), absl::StatusCode::kUnavailable);
  }
  // Nor one that does not trust the certificate (system roots only).
  {
    auto untrusting = client::Client::Create(cc, std::move(*client::ConnectGrpc(address_, {}, quick)));
    ASSERT_TRUE(untrusting.ok());
    EXPECT_EQ((*untrusting)->ParticipateOnce().status().code(), absl::StatusCode::kUnavailable);
  }
  client::ChannelSecurity tls;
  tls.ca_certificate = cert;
  auto c = client::Client::Create(cc, std::move(*client::ConnectGrpc(address_, tls, quick)));
  ASSERT_TRUE(c.ok()) << c.status();
  auto report = (*c)->ParticipateOnce();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcome, client::RoundOutcome::kNotSelected);
  EXPECT_EQ((*c)->model_version(), 1u);  // enrolled, checked in, downloaded and verified over TLS
  tls.ca_certificate = dir_ / "missing.pem";
  EXPECT_EQ(client::ConnectGrpc(address_, tls).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SecurityTest, EnrollmentTokensAreOneTimeBoundAndExpire) {
  Serve();
  const models::SigningKey key = models::SigningKey::Generate(), other = models::SigningKey::Generate();
  auto token = devices_->IssueToken(std::nullopt, absl::Hours(1));
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->size(), 64u);
  // A proof by another key than the one registered.
  v1::EnrollRequest stolen = auth::SignedEnrollRequest("clinic-1", *token, key);
  stolen.set_device_public_key(models::KeyBytes(other.public_key()));
  EXPECT_EQ(Enroll(stolen).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Enroll(auth::SignedEnrollRequest("clinic-1", "0123", key)).error_code(), StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("clinic-1", *token, key)).ok());
  // The same enrollment again (its answer was lost) is acknowledged...
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("clinic-1", *token, key)).ok());
  // ...but the token is used: it enrolls nothing else.
  EXPECT_EQ(Enroll(auth::SignedEnrollRequest("clinic-2", *token, other)).error_code(), StatusCode::UNAUTHENTICATED);
  // An unbound token cannot take over an enrolled device id.
  auto unbound = devices_->IssueToken(std::nullopt, absl::Hours(1));
  EXPECT_EQ(Enroll(auth::SignedEnrollRequest("clinic-1", *unbound, other)).error_code(), StatusCode::ALREADY_EXISTS);
  // A bound token is for its device only...
  auto bound = devices_->IssueToken("clinic-3", absl::Hours(1));
  EXPECT_EQ(Enroll(auth::SignedEnrollRequest("clinic-4", *bound, other)).error_code(), StatusCode::PERMISSION_DENIED);
  // ...and expires.
  auto expired = devices_->IssueToken("clinic-5", absl::Milliseconds(1));
  env_.Advance(absl::Milliseconds(5));
  EXPECT_EQ(Enroll(auth::SignedEnrollRequest("clinic-5", *expired, other)).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Enroll(auth::SignedEnrollRequest("bad id!", *bound, other)).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(devices_->IssueToken("bad id!", absl::Hours(1)).status().code(), absl::StatusCode::kInvalidArgument);
  // A replaced gateway re-enrolls with a token bound to its id.
  auto replacement = devices_->IssueToken("clinic-1", absl::Hours(1));
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("clinic-1", *replacement, other)).ok());
  EXPECT_EQ(Send(SignedCheckIn("clinic-1", key)).error_code(), StatusCode::UNAUTHENTICATED);  // old key
  EXPECT_TRUE(Send(SignedCheckIn("clinic-1", other)).ok());
}

TEST_F(SecurityTest, OnlyFreshRequestsSignedByTheEnrolledKeyPass) {
  Serve();
  const models::SigningKey key = models::SigningKey::Generate(), stranger = models::SigningKey::Generate();
  auto token = devices_->IssueToken("clinic-1", absl::Hours(1));
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("clinic-1", *token, key)).ok());

  Call unsigned_call = SignedCheckIn("clinic-1", key);
  unsigned_call.signature.clear();
  EXPECT_EQ(Send(unsigned_call).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Send(SignedCheckIn("stranger", stranger)).error_code(), StatusCode::UNAUTHENTICATED);  // unenrolled
  EXPECT_EQ(Send(SignedCheckIn("clinic-1", stranger)).error_code(), StatusCode::UNAUTHENTICATED);  // forged id
  Call tampered = SignedCheckIn("clinic-1", key);
  tampered.request.set_installed_model_version(7);  // altered after signing
  EXPECT_EQ(Send(tampered).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Send(SignedCheckIn("clinic-1", key, absl::Minutes(-10))).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Send(SignedCheckIn("clinic-1", key, absl::Minutes(10))).error_code(), StatusCode::UNAUTHENTICATED);
  // A signature for CheckIn does not pass for another method.
  const Call genuine = SignedCheckIn("clinic-1", key);
  {
    grpc::ClientContext c;
    c.AddMetadata(proto::kSignatureMetadataKey, genuine.signature);
    v1::AwaitRequest await;
    *await.mutable_header() = genuine.request.header();
    v1::AwaitResponse out;
    EXPECT_EQ(stub_->Await(&c, await, &out).error_code(), StatusCode::UNAUTHENTICATED);
  }
  v1::CheckInResponse response;
  ASSERT_TRUE(Send(genuine, &response).ok());
  EXPECT_TRUE(response.has_admitted());
  const grpc::Status replay = Send(genuine);
  EXPECT_EQ(replay.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(replay.error_message().find("replayed"), std::string::npos) << replay.error_message();
}

TEST_F(SecurityTest, ARevokedDeviceIsShutOutAtItsNextCall) {
  Serve();
  FillCohort();
  auto token = devices_->IssueToken("clinic-1", absl::Hours(1));
  client::ClientConfig cc;
  cc.device_id = "clinic-1";
  cc.data_dir = dir_ / "gateway";
  cc.trusted_root = pinned_root_;
  cc.enrollment_token = *token;
  auto c = client::Client::Create(cc, std::move(*client::ConnectGrpc(address_, client::ChannelSecurity::Plaintext())));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->ParticipateOnce().ok());
  // Revoked from another process, as `tinyfed device revoke` does, while the
  // server holds the device's key in its cache.
  auto cli = DeviceRegistry::Open(config_.state_dir);
  ASSERT_TRUE(cli.ok());
  ASSERT_TRUE((*cli)->Revoke("clinic-1").ok());
  EXPECT_EQ((*cli)->Revoke("never-enrolled").code(), absl::StatusCode::kNotFound);
  auto after = (*c)->ParticipateOnce();
  EXPECT_EQ(after.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(after.status().message().find("revoked"), std::string::npos) << after.status();
  // Run gives up instead of retrying forever.
  EXPECT_EQ((*c)->Run(1).code(), absl::StatusCode::kPermissionDenied);
  auto listed = devices_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE((*listed)[0].revoked.has_value());
}

TEST_F(SecurityTest, ExcessRequestsAreRefusedAndLoggedOnce) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  config_.security.requests_per_minute = 10;
  Serve();
  const models::SigningKey key = models::SigningKey::Generate();
  auto token = devices_->IssueToken("chatty", absl::Hours(1));
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("chatty", *token, key)).ok());
  int ok = 0, exhausted = 0;
  for (int i = 0; i < 40; ++i) {
    const grpc::Status s = Send(SignedCheckIn("chatty", key));
    ok += s.ok();
    exhausted += s.error_code() == StatusCode::RESOURCE_EXHAUSTED;
  }
  // Garbage floods the log no more than once either.
  for (int i = 0; i < 20; ++i) {
    Call bad = SignedCheckIn("chatty", key);
    bad.request.mutable_header()->set_device_id(std::string("\xff\xfe", 2));
    EXPECT_EQ(Send(bad).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  spdlog::set_default_logger(previous);
  EXPECT_EQ(ok, 10);  // a full bucket, refilled by a fraction in the meantime
  EXPECT_EQ(exhausted, 30);
  const std::string text = log.str();
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("exceeds its 10 requests per minute"), 1u) << text;
  EXPECT_EQ(count("malformed"), 1u) << text;
}

TEST_F(SecurityTest, CallsBeyondTheConcurrencyLimitAreRefused) {
  config_.security.max_concurrent_calls = 1;
  config_.security.requests_per_minute = 100000;  // only the concurrency limit here
  Serve();
  const models::SigningKey key = models::SigningKey::Generate();
  auto token = devices_->IssueToken("busy", absl::Hours(1));
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("busy", *token, key)).ok());
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        const grpc::Status s = Send(SignedCheckIn("busy", key));
        if (s.ok()) {
          ++ok;
        } else if (s.error_code() == StatusCode::RESOURCE_EXHAUSTED &&
                   s.error_message().find("limit of 1 concurrent calls") != std::string::npos) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(refused.load(), 0);  // eight callers, one call at a time
  EXPECT_EQ(other.load(), 0);
  std::printf("800 calls from 8 threads: %d served, %d refused\n", ok.load(), refused.load());
}

// Sockets of this process whose local port is `port` and that are still in
// use: the server's side of its connections, and its listening socket. A
// socket that is shut down or closed by its peer is left out: gRPC closes
// its descriptor on its own schedule (slower under sanitizers), and the
// flood test checks from the client's side that it does.
int LiveServerSockets(int port) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_storage a{};
    socklen_t len = sizeof(a);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || a.ss_family != AF_INET) continue;
    if (ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port) != port) continue;
    pollfd p{fd, POLLRDHUP, 0};
    n += ::poll(&p, 1, 0) == 0;
  }
  return n;
}

// A bare TCP connection to 127.0.0.1:port that sends nothing.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True once the server has closed `fd` (end of file or reset), waiting at
// most until `deadline`; what the server sent before (its HTTP/2 settings)
// is read and dropped.
bool ClosedByServer(int fd, absl::Time deadline) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0 || ::poll(&p, 1, static_cast<int>(ms)) <= 0) return false;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
}

// The flood that burnt privacy budget: hundreds of connections from nobody.
// The server keeps at most max_connections of them, shuts down those that
// authenticate nothing, and an enrolled gateway's calls still pass.
TEST_F(SecurityTest, ConnectionFloodsAreCappedAndCannotShutOutGateways) {
  config_.security.max_connections = 32;
  config_.security.connection_auth_timeout = absl::Seconds(1);
  config_.security.requests_per_minute = 100000;
  Serve();
  const int port = server_->port();
  const models::SigningKey key = models::SigningKey::Generate();
  auto token = devices_->IssueToken("clinic-1", absl::Hours(1));
  ASSERT_TRUE(Enroll(auth::SignedEnrollRequest("clinic-1", *token, key)).ok());
  std::vector<int> flood;
  for (int i = 0; i < 300; ++i) {
    const int fd = Connect(port);
    if (fd >= 0) flood.push_back(fd);
  }
  ASSERT_GT(flood.size(), 250u);
  // Every gateway call during the flood passes (on a new connection: the
  // flood displaces connections that authenticated nothing, never this one).
  int served = 0;
  for (int i = 0; i < 50; ++i) {
    auto stub = v1::Aggregator::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext c;
    const Call call = SignedCheckIn("clinic-1", key);
    c.AddMetadata(proto::kSignatureMetadataKey, call.signature);
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::CheckInResponse out;
    served += stub->CheckIn(&c, call.request, &out).ok();
    flood.push_back(Connect(port));
  }
  EXPECT_EQ(served, 50);
  // At most the cap (and the listening socket) is in use on the server's side.
  EXPECT_LE(LiveServerSockets(port), config_.security.max_connections + 1);
  // Those it kept are shut down once they pass the authentication timeout.
  int closed = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (int fd : flood) closed += fd >= 0 && ClosedByServer(fd, deadline);
  EXPECT_EQ(closed, static_cast<int>(std::count_if(flood.begin(), flood.end(), [](int fd) { return fd >= 0; })));
  for (int fd : flood) ::close(fd);
}

// The descriptor limit must leave room for max_connections: the aggregator
// raises its soft limit, or refuses to start naming both numbers.
TEST_F(SecurityTest, AConnectionCapTheDescriptorLimitCannotHoldIsRefused) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  config_.security.max_connections = static_cast<int>(std::min<rlim_t>(limit.rlim_max, 1 << 30));
  auto server = AggregatorServer::Start(engine_.get(), config_.listen, config_.security, true);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(server.status().message().find("security.max_connections"), std::string::npos) << server.status();
}

}  // namespace
}  // namespace tinyfed::aggregator
