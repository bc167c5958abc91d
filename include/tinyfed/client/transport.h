// How a client reaches the aggregator: the calls of the round service.
// The gRPC transport is the one gateways use (TLS, every request signed with
// the device key); the simulator plugs in an in-process one that calls the
// round engine directly.
#ifndef TINYFED_CLIENT_TRANSPORT_H_
#define TINYFED_CLIENT_TRANSPORT_H_

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::client {

class Transport {
 public:
  virtual ~Transport() = default;
  // The device key that signs every later request (service.proto, "Device
  // authentication"). Transports without a network ignore it.
  virtual void SetDeviceKey(std::shared_ptr<const models::SigningKey> /*key*/) {}
  virtual absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& /*request*/) {
    return absl::UnimplementedError("this transport has no enrollment");
  }
  virtual absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) = 0;
  virtual absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& request) = 0;
  virtual absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& request) = 0;
  virtual absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& request) = 0;
  virtual absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& request) = 0;
};

// Passes every call on to another transport: the base of transports that
// watch or alter some calls (the simulator's traffic counter, tests'
// attackers), which override only those.
class ForwardingTransport : public Transport {
 public:
  explicit ForwardingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  void SetDeviceKey(std::shared_ptr<const models::SigningKey> key) override { inner_->SetDeviceKey(std::move(key)); }
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& r) override { return inner_->Enroll(r); }
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override { return inner_->CheckIn(r); }
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override { return inner_->Await(r); }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override { return inner_->Submit(r); }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    return inner_->GetModelChunk(r);
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return inner_->ReportTelemetry(r);
  }

 private:
  std::unique_ptr<Transport> inner_;
};

// Every call has a deadline; calls that fail with UNAVAILABLE or
// DEADLINE_EXCEEDED (a lost link, an aggregator restarting) are retried with
// exponential backoff and full jitter. Every call of the service is safe to
// repeat, so a retry never double-counts. The backoff stays short: an
// aggregator back from a restart resumes its round and should hear from its
// gateways within seconds; while it is down an attempt costs no packet
// (gRPC's channel itself reconnects at most every 1 to 2 s).
struct RetryPolicy {
  absl::Duration call_deadline = absl::Seconds(10);
  int max_attempts = 6;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(2);
  double multiplier = 2.0;
};

struct ChannelSecurity {
  // PEM file of the CA that signed the aggregator's certificate; empty: the
  // system's roots.
  std::filesystem::path ca_certificate;
  // Plaintext: tests only. Anyone on the path reads and alters the traffic.
  bool insecure = false;

  static ChannelSecurity Plaintext() {
    ChannelSecurity s;
    s.insecure = true;
    return s;
  }
};

// A gRPC channel to "host:port", TLS unless `security.insecure`. NOT_FOUND
// or INVALID_ARGUMENT for an unreadable CA file.
absl::StatusOr<std::unique_ptr<Transport>> ConnectGrpc(const std::string& address, const ChannelSecurity& security,
                                                       const RetryPolicy& policy = {});

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_TRANSPORT_H_
