#include "tinyfed/client/transport.h"

#include <grpcpp/grpcpp.h>
#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "client/internal/retry.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/v1/service.grpc.pb.h"

namespace tinyfed::client {
namespace {

class GrpcTransport final : public Transport {
 public:
  GrpcTransport(std::shared_ptr<grpc::ChannelCredentials> credentials, const std::string& address,
                const RetryPolicy& policy)
      : policy_(policy) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(8 << 20);
    // gRPC's own reconnect backoff grows to 120 s: after an aggregator
    // restart gateways took up to a minute to come back. A connection
    // attempt is one small packet; one every 2 s (jittered) is cheap. (The
    // minimum stays gRPC's: it is also how long a connection and its TLS
    // handshake may take, which a slow link needs.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    // And the resolver, asked again after every failed connection, answers
    // at most every 30 s by default: the channel waited for it.
    args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);
    stub_ = v1::Aggregator::NewStub(grpc::CreateCustomChannel(address, credentials, args));
  }

  void SetDeviceKey(std::shared_ptr<const models::SigningKey> key) override { key_ = std::move(key); }

  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& r) override {
    return Call<v1::EnrollResponse>([&](auto* c, auto* out) { return stub_->Enroll(c, r, out); });
  }
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override {
    return Signed<v1::CheckInResponse>(r, "CheckIn",
                                       [&](auto* c, const auto& s, auto* out) { return stub_->CheckIn(c, s, out); });
  }
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override {
    return Signed<v1::AwaitResponse>(r, "Await",
                                     [&](auto* c, const auto& s, auto* out) { return stub_->Await(c, s, out); });
  }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override {
    return Signed<v1::SubmitResponse>(r, "Submit",
                                      [&](auto* c, const auto& s, auto* out) { return stub_->Submit(c, s, out); });
  }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    return Signed<v1::ModelChunk>(r, "GetModelChunk",
                                  [&](auto* c, const auto& s, auto* out) { return stub_->GetModelChunk(c, s, out); });
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return Signed<v1::TelemetryResponse>(
        r, "ReportTelemetry", [&](auto* c, const auto& s, auto* out) { return stub_->ReportTelemetry(c, s, out); });
  }

 private:
  // Each attempt gets a fresh nonce and timestamp, hence its own signature:
  // the aggregator refuses a nonce it has seen.
  template <typename Response, typename Request, typename Rpc>
  absl::StatusOr<Response> Signed(const Request& request, const char* method, Rpc&& rpc) {
    const std::string full_name = std::string("/tinyfed.v1.Aggregator/") + method;
    return Call<Response>([&](grpc::ClientContext* context, Response* out) {
      Request copy = request;
      auth::StampHeader(copy.mutable_header(), absl::Now());
      if (key_) {
        // The stub serializes `copy` to these same bytes (one binary, no maps).
        context->AddMetadata(proto::kSignatureMetadataKey,
                             auth::SignRequest(full_name, copy.SerializeAsString(), *key_));
      }
      return rpc(context, copy, out);
    });
  }

  template <typename Response, typename Rpc>
  absl::StatusOr<Response> Call(Rpc&& rpc) {
    Response response;
    absl::Status status = internal::RetryWithBackoff(
        policy_,
        [&] {
          grpc::ClientContext context;
          context.set_deadline(absl::ToChronoTime(absl::Now() + policy_.call_deadline));
          response.Clear();
          const grpc::Status s = rpc(&context, &response);
          return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
        },
        [] { return randombytes_uniform(1u << 30) / static_cast<double>(1u << 30); },
        [](absl::Duration d) { std::this_thread::sleep_for(absl::ToChronoNanoseconds(d)); });
    if (!status.ok()) return status;
    return response;
  }

  RetryPolicy policy_;
  std::unique_ptr<v1::Aggregator::Stub> stub_;
  std::shared_ptr<const models::SigningKey> key_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> ConnectGrpc(const std::string& address, const ChannelSecurity& security,
                                                       const RetryPolicy& policy) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (security.insecure) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions options;
    if (!security.ca_certificate.empty()) {
      auto pem = base::ReadFileBytes(security.ca_certificate, 1 << 20);
      if (!pem.ok()) return pem.status();
      options.pem_root_certs = std::move(*pem);
    }
    credentials = grpc::SslCredentials(options);
  }
  return std::make_unique<GrpcTransport>(std::move(credentials), address, policy);
}

}  // namespace tinyfed::client
