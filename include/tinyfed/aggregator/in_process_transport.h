// A client transport that calls a round engine in this process directly:
// the real protocol objects, no sockets. The simulator's clinics and
// regions use it, and tests that play a federation in one process.
#ifndef TINYFED_AGGREGATOR_IN_PROCESS_TRANSPORT_H_
#define TINYFED_AGGREGATOR_IN_PROCESS_TRANSPORT_H_

#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/client/transport.h"

namespace tinyfed::aggregator {

class InProcessTransport : public client::Transport {
 public:
  explicit InProcessTransport(RoundEngine* engine) : engine_(engine) {}
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& r) override {
    if (auto s = engine_->devices()->Enroll(r); !s.ok()) return s;
    return v1::EnrollResponse();
  }
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override { return engine_->CheckIn(r); }
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override { return engine_->Await(r); }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override { return engine_->Submit(r); }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    return engine_->GetModelChunk(r);
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return engine_->ReportTelemetry(r);
  }

 private:
  RoundEngine* engine_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_IN_PROCESS_TRANSPORT_H_
