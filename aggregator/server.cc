#include "tinyfed/aggregator/server.h"

#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "aggregator/internal/authenticator.h"
#include "aggregator/internal/connection_guard.h"
#include "aggregator/internal/log_limiter.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/proto/device_id.h"
#include "tinyfed/proto/device_text.h"
#include "tinyfed/v1/service.grpc.pb.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

using Service = v1::Aggregator::WithRawCallbackMethod_Enroll<
    v1::Aggregator::WithRawCallbackMethod_CheckIn<v1::Aggregator::WithRawCallbackMethod_Await<
        v1::Aggregator::WithRawCallbackMethod_Submit<v1::Aggregator::WithRawCallbackMethod_GetModelChunk<
            v1::Aggregator::WithRawCallbackMethod_ReportTelemetry<v1::Aggregator::Service>>>>>>;

constexpr size_t kMaxEnrollBytes = 1024;
constexpr size_t kGrpcMemoryBytes = size_t{256} << 20;

const char* MethodName(Method m) {
  switch (m) {
    case Method::kCheckIn:
      return "CheckIn";
    case Method::kAwait:
      return "Await";
    case Method::kSubmit:
      return "Submit";
    case Method::kGetModelChunk:
      return "GetModelChunk";
    case Method::kReportTelemetry:
      return "ReportTelemetry";
  }
  return "?";
}

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

class RawService final : public Service {
 public:
  RawService(RoundEngine* engine, DeviceRegistry* devices, const SecurityConfig& security,
             internal::ConnectionGuard* connections)
      : engine_(engine),
        devices_(devices),
        security_(security),
        auth_(devices, security),
        connections_(connections),
        metrics_(engine->metrics()) {}
  // The synchronous overloads stay disabled (they abort); naming them keeps
  // them visible next to the raw ones.
  using Service::Await;
  using Service::CheckIn;
  using Service::Enroll;
  using Service::GetModelChunk;
  using Service::ReportTelemetry;
  using Service::Submit;

  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* c, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override {
    grpc::ServerUnaryReactor* reactor = c->DefaultReactor();
    const absl::Time start = absl::Now();
    reactor->Finish(Answered("Enroll", start, ServeEnroll(*c, in, out)));
    return reactor;
  }
  grpc::ServerUnaryReactor* CheckIn(grpc::CallbackServerContext* c, const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override {
    return Handle<v1::CheckInRequest>(c, in, out, Method::kCheckIn,
                                      [this](const v1::CheckInRequest& r) { return engine_->CheckIn(r); });
  }
  grpc::ServerUnaryReactor* Await(grpc::CallbackServerContext* c, const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out) override {
    return Handle<v1::AwaitRequest>(c, in, out, Method::kAwait,
                                    [this](const v1::AwaitRequest& r) { return engine_->Await(r); });
  }
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* c, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override {
    return Handle<v1::SubmitRequest>(c, in, out, Method::kSubmit,
                                     [this](const v1::SubmitRequest& r) { return engine_->Submit(r); });
  }
  grpc::ServerUnaryReactor* GetModelChunk(grpc::CallbackServerContext* c, const grpc::ByteBuffer* in,
                                          grpc::ByteBuffer* out) override {
    return Handle<v1::ModelChunkRequest>(c, in, out, Method::kGetModelChunk,
                                         [this](const v1::ModelChunkRequest& r) { return engine_->GetModelChunk(r); });
  }
  grpc::ServerUnaryReactor* ReportTelemetry(grpc::CallbackServerContext* c, const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out) override {
    return Handle<v1::TelemetryRequest>(c, in, out, Method::kReportTelemetry,
                                        [this](const v1::TelemetryRequest& r) { return engine_->ReportTelemetry(r); });
  }

 private:
  // Counts the calls in flight for the concurrency limit.
  class InFlight {
   public:
    explicit InFlight(std::atomic<int>* n) : n_(n), count_(n->fetch_add(1) + 1) {}
    ~InFlight() { n_->fetch_sub(1); }
    int count() const { return count_; }

   private:
    std::atomic<int>* n_;
    int count_;
  };

  template <typename Request, typename Handler>
  grpc::ServerUnaryReactor* Handle(grpc::CallbackServerContext* context, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out, Method method, Handler&& handler) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const absl::Time start = absl::Now();
    reactor->Finish(Answered(MethodName(method), start, Serve<Request>(*context, in, out, method, handler)));
    return reactor;
  }

  grpc::Status Answered(const char* method, absl::Time start, grpc::Status status) {
    metrics_.AddCounter(
        "tinyfed_calls_total",
        {{"method", method}, {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))}});
    metrics_.Observe("tinyfed_call_seconds", {{"method", method}}, absl::ToDoubleSeconds(absl::Now() - start));
    return status;
  }

  void Refused(const char* kind) { metrics_.AddCounter("tinyfed_refusals_total", {{"kind", kind}}); }

  // Checks 1-3 of server.h; `bytes` receives the request as sent.
  template <typename Request>
  grpc::Status Read(const grpc::CallbackServerContext& context, const grpc::ByteBuffer* in, const char* method,
                    size_t limit, std::string* bytes, Request* request) {
    if (const int most = max_concurrent_calls_.load(); in_flight_.load() > most) {
      Refused("concurrency");
      refusals_.Warn("concurrency",
                     StrCat("refusing calls: over ", most, " in flight (security.max_concurrent_calls)"));
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          StrCat("the aggregator is at its limit of ", most, " concurrent calls"));
    }
    if (in->Length() > limit) {
      Refused("size");
      refusals_.Warn(StrCat("size ", method), StrCat(method, " refused: ", in->Length(), " bytes from ", context.peer(),
                                                     " exceed the limit of ", limit));
      return grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          StrCat(method, " request of ", in->Length(), " bytes exceeds its limit of ", limit, " bytes"));
    }
    std::vector<grpc::Slice> slices;
    if (!in->Dump(&slices).ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the request");
    bytes->reserve(in->Length());
    for (const grpc::Slice& s : slices) bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
    if (!request->ParseFromString(*bytes)) {
      Refused("malformed");
      refusals_.Warn(StrCat("malformed ", method), StrCat(method, " refused: malformed request from ", context.peer()));
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          StrCat("malformed ", Request::descriptor()->name(), " (not a valid protobuf message)"));
    }
    return grpc::Status::OK;
  }

  grpc::Status ServeEnroll(const grpc::CallbackServerContext& context, const grpc::ByteBuffer* in,
                           grpc::ByteBuffer* out) {
    InFlight in_flight(&in_flight_);
    std::string bytes;
    v1::EnrollRequest request;
    if (auto s = Read(context, in, "Enroll", kMaxEnrollBytes, &bytes, &request); !s.ok()) return s;
    if (absl::Status s = devices_->Enroll(request); !s.ok()) {
      Refused("enrollment");
      // Keyed by the kind of refusal, not the claimed id: an attacker
      // choosing ids must not choose how many lines it gets.
      refusals_.Warn(
          StrCat("enroll ", absl::StatusCodeToString(s.code())),
          StrCat("enrollment of device '", proto::DeviceText(request.device_id(), 64), "' refused: ", s.message()));
      return ToGrpc(s);
    }
    base::LogEvent(spdlog::level::info, "device_enrolled", {{"device", request.device_id()}},
                   fmt::format("device {} enrolled", request.device_id()));
    connections_->Authenticated(context.peer(), request.device_id());
    bool own = false;
    return grpc::SerializationTraits<v1::EnrollResponse>::Serialize(v1::EnrollResponse(), out, &own);
  }

  template <typename Request, typename Handler>
  grpc::Status Serve(const grpc::CallbackServerContext& context, const grpc::ByteBuffer* in, grpc::ByteBuffer* out,
                     Method method, Handler& handler) {
    InFlight in_flight(&in_flight_);
    std::string bytes;
    Request request;
    const char* name = MethodName(method);
    if (auto s = Read(context, in, name, engine_->MaxRequestBytes(method), &bytes, &request); !s.ok()) return s;
    if (!proto::IsValidDeviceId(request.header().device_id())) {
      Refused("device_id");
      refusals_.Warn(StrCat("device id ", name), StrCat(name, " refused: malformed device id from ", context.peer()));
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "header.device_id must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    const std::string full_name = StrCat("/tinyfed.v1.Aggregator/", name);
    const auto& metadata = context.client_metadata();
    const auto signature = metadata.find(proto::kSignatureMetadataKey);
    const std::optional<std::string_view> signed_with =
        signature == metadata.end()
            ? std::nullopt
            : std::optional<std::string_view>(std::string_view(signature->second.data(), signature->second.size()));
    if (absl::Status s = auth_.Authenticate(full_name, bytes, request.header(), signed_with, absl::Now()); !s.ok()) {
      const std::string& device = request.header().device_id();
      // Per device only once the device is authenticated (revoked, over its
      // rate): enrolled devices are few, ids an attacker makes up are not.
      const bool authenticated =
          s.code() == absl::StatusCode::kPermissionDenied || s.code() == absl::StatusCode::kResourceExhausted;
      Refused(s.code() == absl::StatusCode::kPermissionDenied    ? "revoked"
              : s.code() == absl::StatusCode::kResourceExhausted ? "rate_limit"
                                                                 : "unauthenticated");
      refusals_.Warn(StrCat(absl::StatusCodeToString(s.code()), " ", name, authenticated ? " " + device : ""),
                     StrCat(name, " from ", context.peer(), " as device '", proto::DeviceText(device, 64),
                            "' refused: ", s.message()));
      return ToGrpc(s);
    }
    connections_->Authenticated(context.peer(), request.header().device_id());
    auto response = handler(request);
    if (!response.ok()) return ToGrpc(response.status());
    bool own = false;
    return grpc::SerializationTraits<typename std::decay_t<decltype(*response)>>::Serialize(*response, out, &own);
  }

  RoundEngine* engine_;
  DeviceRegistry* devices_;
  const SecurityConfig security_;
  internal::Authenticator auth_;
  internal::ConnectionGuard* connections_;
  internal::LogLimiter refusals_;
  Metrics& metrics_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_concurrent_calls_{security_.max_concurrent_calls};

 public:
  std::vector<std::string> ReloadLimits(const SecurityConfig& fresh) {
    std::vector<std::string> changed;
    if (const int was = max_concurrent_calls_.exchange(fresh.max_concurrent_calls); was != fresh.max_concurrent_calls) {
      changed.push_back(StrCat("security.max_concurrent_calls ", was, " -> ", fresh.max_concurrent_calls));
    }
    if (const int was = requests_per_minute_.exchange(fresh.requests_per_minute); was != fresh.requests_per_minute) {
      auth_.SetRequestsPerMinute(fresh.requests_per_minute);
      changed.push_back(StrCat("security.requests_per_minute ", was, " -> ", fresh.requests_per_minute));
    }
    return changed;
  }

 private:
  std::atomic<int> requests_per_minute_{security_.requests_per_minute};
};

}  // namespace

struct AggregatorServer::Impl {
  RoundEngine* engine = nullptr;
  std::unique_ptr<internal::ConnectionGuard> connections;
  std::unique_ptr<RawService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor;
  std::atomic<bool> stop{false};
  std::thread ticker;
};

AggregatorServer::AggregatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AggregatorServer::~AggregatorServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<AggregatorServer>> AggregatorServer::Start(RoundEngine* engine,
                                                                          const std::string& address,
                                                                          const SecurityConfig& security,
                                                                          bool insecure) {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!security.tls_certificate.empty()) {
    auto certificate = base::ReadFileBytes(security.tls_certificate, 1 << 20);
    if (!certificate.ok()) return certificate.status();
    auto key = base::ReadFileBytes(security.tls_private_key, 1 << 20);
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions options;
    options.pem_key_cert_pairs.push_back({std::move(*key), std::move(*certificate)});
    credentials = grpc::SslServerCredentials(options);
  } else if (insecure) {
    spdlog::warn("serving PLAINTEXT on {}: --insecure is for tests; gateways' traffic is readable on the network",
                 address);
    credentials = grpc::InsecureServerCredentials();
  } else {
    return absl::FailedPreconditionError(
        "no TLS certificate: set security.tls_certificate and security.tls_private_key (plaintext needs --insecure, "
        "for tests only)");
  }
  // The parser's own log line for every malformed string would let a flood
  // of bad requests flood the log; the server logs refusals itself.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel level, const char*, int, const std::string& message) {
    if (level >= google::protobuf::LOGLEVEL_FATAL) spdlog::critical("protobuf: {}", message);
  });
  auto impl = std::make_unique<Impl>();
  impl->engine = engine;
  auto connections = internal::ConnectionGuard::Listen(
      address, {.max_connections = security.max_connections, .auth_timeout = security.connection_auth_timeout});
  if (!connections.ok()) return connections.status();
  impl->connections = std::move(*connections);
  grpc::EnableDefaultHealthCheckService(true);
  impl->service = std::make_unique<RawService>(engine, engine->devices(), security, impl->connections.get());
  grpc::ServerBuilder builder;
  impl->acceptor = builder.experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, credentials);
  builder.RegisterService(impl->service.get());
  size_t largest = kMaxEnrollBytes;
  for (Method m :
       {Method::kCheckIn, Method::kAwait, Method::kSubmit, Method::kGetModelChunk, Method::kReportTelemetry}) {
    largest = std::max(largest, engine->MaxRequestBytes(m));
  }
  // gRPC itself refuses anything larger before buffering it; each method
  // then applies its own, smaller limit.
  builder.SetMaxReceiveMessageSize(static_cast<int>(largest + 1024));
  // What one connection may hold: streams, and time. The guard shuts down
  // connections that authenticate nothing; these bound the rest.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 16);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(security.connection_auth_timeout)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 2 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, 30 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 60 * 1000);
  // Pings faster than one per 10 s without data are strikes; two end the connection.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // gRPC's buffers for every connection together.
  grpc::ResourceQuota quota("tinyfed-aggregator");
  quota.Resize(kGrpcMemoryBytes);
  builder.SetResourceQuota(quota);
  impl->server = builder.BuildAndStart();
  if (!impl->server) return absl::UnavailableError(StrCat("cannot start the gRPC server on ", address));
  impl->connections->Start(impl->acceptor.get());
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  engine->metrics().SetGauge("tinyfed_serving", {}, 1);
  Impl* raw = impl.get();
  impl->ticker = std::thread([raw] {
    absl::Time trimmed = absl::Now(), counted = absl::InfinitePast();
    while (!raw->stop.load()) {
      raw->engine->Tick();
      if (absl::Now() - counted > absl::Seconds(1)) {
        raw->engine->metrics().SetGauge("tinyfed_open_connections", {}, raw->connections->open_connections());
        counted = absl::Now();
      }
      // Memory a flood made glibc keep goes back to the system.
      if (absl::Now() - trimmed > absl::Seconds(10)) {
        ::malloc_trim(0);
        trimmed = absl::Now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  spdlog::info("aggregator listening on {} (port {}, {}, at most {} connections)", address, impl->connections->port(),
               security.tls_certificate.empty() ? "plaintext" : "TLS", security.max_connections);
  return std::unique_ptr<AggregatorServer>(new AggregatorServer(std::move(impl)));
}

int AggregatorServer::port() const { return impl_->connections->port(); }

std::vector<std::string> AggregatorServer::ReloadLimits(const SecurityConfig& fresh) {
  return impl_->service->ReloadLimits(fresh);
}

void AggregatorServer::Drain() {
  if (!impl_ || impl_->stop.load()) return;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->engine->metrics().SetGauge("tinyfed_serving", {}, 0);
  spdlog::info("draining: health is NOT_SERVING; calls are still answered until shutdown");
}

void AggregatorServer::Shutdown() {
  if (!impl_ || impl_->stop.exchange(true)) return;
  impl_->connections->Stop();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->ticker.join();
}

}  // namespace tinyfed::aggregator
