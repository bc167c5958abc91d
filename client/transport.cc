#include "tinyfed/client/transport.h"

#include <grpcpp/grpcpp.h>
#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "tinyfed/v1/service.grpc.pb.h"

namespace tinyfed::client {
namespace {

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

class GrpcTransport final : public Transport {
 public:
  GrpcTransport(const std::string& address, const RetryPolicy& policy) : policy_(policy) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(8 << 20);
    stub_ = v1::Aggregator::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override {
    return Call<v1::CheckInResponse>([&](auto* c, auto* out) { return stub_->CheckIn(c, r, out); });
  }
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override {
    return Call<v1::AwaitResponse>([&](auto* c, auto* out) { return stub_->Await(c, r, out); });
  }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override {
    return Call<v1::SubmitResponse>([&](auto* c, auto* out) { return stub_->Submit(c, r, out); });
  }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    return Call<v1::ModelChunk>([&](auto* c, auto* out) { return stub_->GetModelChunk(c, r, out); });
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return Call<v1::TelemetryResponse>([&](auto* c, auto* out) { return stub_->ReportTelemetry(c, r, out); });
  }

 private:
  template <typename Response, typename Rpc>
  absl::StatusOr<Response> Call(Rpc&& rpc) {
    absl::Duration backoff = policy_.initial_backoff;
    for (int attempt = 1;; ++attempt) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + policy_.call_deadline));
      Response response;
      const grpc::Status status = rpc(&context, &response);
      if (status.ok()) return response;
      if (!Retryable(status.error_code()) || attempt >= policy_.max_attempts) {
        return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
      }
      // Full jitter: spread the retries of many gateways that lost the link together.
      const double fraction = randombytes_uniform(1u << 30) / static_cast<double>(1u << 30);
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff * fraction));
      backoff = std::min(backoff * policy_.multiplier, policy_.max_backoff);
    }
  }

  RetryPolicy policy_;
  std::unique_ptr<v1::Aggregator::Stub> stub_;
};

}  // namespace

std::unique_ptr<Transport> ConnectGrpc(const std::string& address, const RetryPolicy& policy) {
  return std::make_unique<GrpcTransport>(address, policy);
}

}  // namespace tinyfed::client
