#include "tinyfed/aggregator/server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/v1/service.grpc.pb.h"

namespace tinyfed::aggregator {
namespace {

using Service = v1::Aggregator::WithRawCallbackMethod_CheckIn<v1::Aggregator::WithRawCallbackMethod_Await<
    v1::Aggregator::WithRawCallbackMethod_Submit<v1::Aggregator::WithRawCallbackMethod_GetModelChunk<
        v1::Aggregator::WithRawCallbackMethod_ReportTelemetry<v1::Aggregator::Service>>>>>;

const char* MethodName(Method m) {
  switch (m) {
    case Method::kCheckIn: return "CheckIn";
    case Method::kAwait: return "Await";
    case Method::kSubmit: return "Submit";
    case Method::kGetModelChunk: return "GetModelChunk";
    case Method::kReportTelemetry: return "ReportTelemetry";
  }
  return "?";
}

class RawService final : public Service {
 public:
  explicit RawService(RoundEngine* engine) : engine_(engine) {}
  // The synchronous overloads stay disabled (they abort); naming them keeps
  // them visible next to the raw ones.
  using Service::Await;
  using Service::CheckIn;
  using Service::GetModelChunk;
  using Service::ReportTelemetry;
  using Service::Submit;

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
    return Handle<v1::TelemetryRequest>(
        c, in, out, Method::kReportTelemetry, [this](const v1::TelemetryRequest& r) { return engine_->ReportTelemetry(r); });
  }

 private:
  template <typename Request, typename Handler>
  grpc::ServerUnaryReactor* Handle(grpc::CallbackServerContext* context, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out, Method method, Handler&& handler) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Serve<Request>(in, out, method, handler));
    return reactor;
  }

  template <typename Request, typename Handler>
  grpc::Status Serve(const grpc::ByteBuffer* in, grpc::ByteBuffer* out, Method method, Handler& handler) {
    const size_t limit = engine_->MaxRequestBytes(method);
    if (in->Length() > limit) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat(MethodName(method), " request of ", in->Length(), " bytes exceeds its limit of ",
                                       limit, " bytes"));
    }
    Request request;
    grpc::ByteBuffer copy(*in);  // Deserialize consumes its buffer; copies share slices
    if (!grpc::SerializationTraits<Request>::Deserialize(&copy, &request).ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("malformed ", Request::descriptor()->name(), " (not a valid protobuf message)"));
    }
    auto response = handler(request);
    if (!response.ok()) {
      return grpc::Status(static_cast<grpc::StatusCode>(response.status().code()),
                          std::string(response.status().message()));
    }
    bool own = false;
    return grpc::SerializationTraits<typename std::decay_t<decltype(*response)>>::Serialize(*response, out, &own);
  }

  RoundEngine* engine_;
};

}  // namespace

struct AggregatorServer::Impl {
  RoundEngine* engine = nullptr;
  std::unique_ptr<RawService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::atomic<bool> stop{false};
  std::thread ticker;
};

AggregatorServer::AggregatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AggregatorServer::~AggregatorServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<AggregatorServer>> AggregatorServer::Start(RoundEngine* engine,
                                                                          const std::string& address) {
  auto impl = std::make_unique<Impl>();
  impl->engine = engine;
  impl->service = std::make_unique<RawService>(engine);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl->port);
  builder.RegisterService(impl->service.get());
  size_t largest = 0;
  for (Method m : {Method::kCheckIn, Method::kAwait, Method::kSubmit, Method::kGetModelChunk,
                   Method::kReportTelemetry}) {
    largest = std::max(largest, engine->MaxRequestBytes(m));
  }
  // gRPC itself refuses anything larger before buffering it; each method
  // then applies its own, smaller limit.
  builder.SetMaxReceiveMessageSize(static_cast<int>(largest + 1024));
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  Impl* raw = impl.get();
  impl->ticker = std::thread([raw] {
    while (!raw->stop.load()) {
      raw->engine->Tick();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  spdlog::info("aggregator listening on {} (port {})", address, impl->port);
  return std::unique_ptr<AggregatorServer>(new AggregatorServer(std::move(impl)));
}

int AggregatorServer::port() const { return impl_->port; }

void AggregatorServer::Shutdown() {
  if (!impl_ || impl_->stop.exchange(true)) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->ticker.join();
}

}  // namespace tinyfed::aggregator
