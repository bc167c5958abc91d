// How the simulator watches a federation: what each clinic did in the
// current round as seen at its transport (admitted, submitted, dropped,
// bytes and calls), and the transport that counts it.
#ifndef TINYFED_SIM_INTERNAL_TRACKER_H_
#define TINYFED_SIM_INTERNAL_TRACKER_H_

#include <sodium.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/client/transport.h"

namespace tinyfed::sim::internal {

// What every clinic did in the current round, as seen at its transport.
class Tracker {
 public:
  struct Device {
    bool admitted = false;
    std::set<v1::Phase> submitted;
    int dropped_at = -1;  // phase index the clinic lost power at, -1: did not
    bool finished = false;
    uint64_t up = 0, down = 0;
    uint64_t update_up = 0;   // of `up`: the encoded update itself, the rest is protocol
    uint64_t model_down = 0;  // of `down`: model bytes
    int calls = 0;
  };

  void Reset(const std::vector<std::string>& chosen) {
    absl::MutexLock lock(&mu_);
    devices_.clear();
    for (const auto& id : chosen) devices_[id];
  }
  template <typename F>
  void Update(const std::string& id, F&& f) {
    absl::MutexLock lock(&mu_);
    f(devices_[id]);
  }
  // Blocks until pred(devices) holds; gives up after a minute of real time.
  template <typename P>
  bool WaitFor(P&& pred) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pred(devices_); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Seconds(60));
  }
  std::map<std::string, Device> Snapshot() {
    absl::MutexLock lock(&mu_);
    return devices_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Device> devices_ ABSL_GUARDED_BY(mu_);
};

// Counts each clinic's bytes and calls and tells the tracker what it did.
class TrackingTransport : public client::ForwardingTransport {
 public:
  TrackingTransport(std::unique_ptr<client::Transport> inner, Tracker* tracker, std::string id)
      : ForwardingTransport(std::move(inner)), tracker_(tracker), id_(std::move(id)) {}
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override {
    auto out = Count(r, ForwardingTransport::CheckIn(r));
    if (out.ok() && out->has_admitted()) tracker_->Update(id_, [](Tracker::Device& d) { d.admitted = true; });
    return out;
  }
  // Polls that only hear "wait" are not counted: how many there are depends
  // on the simulator's scheduling, not on the protocol.
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override {
    auto out = ForwardingTransport::Await(r);
    if (out.ok() && out->has_wait()) return out;
    return Count(r, std::move(out));
  }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override {
    auto out = Count(r, ForwardingTransport::Submit(r));
    if (out.ok()) {
      const uint64_t update =
          r.has_update() ? r.update().ByteSizeLong() : r.message().masked_input().masked_input().size();
      tracker_->Update(id_, [&](Tracker::Device& d) {
        d.submitted.insert(r.header().phase());
        d.update_up += update;
      });
    }
    return out;
  }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    auto out = Count(r, ForwardingTransport::GetModelChunk(r));
    if (out.ok()) tracker_->Update(id_, [&](Tracker::Device& d) { d.model_down += out->data().size(); });
    return out;
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return Count(r, ForwardingTransport::ReportTelemetry(r));
  }

 private:
  template <typename Request, typename Response>
  absl::StatusOr<Response> Count(const Request& request, absl::StatusOr<Response> response) {
    const uint64_t up = SentBytes(request), down = response.ok() ? response->ByteSizeLong() : 0;
    tracker_->Update(id_, [&](Tracker::Device& d) {
      d.up += up;
      d.down += down;
      ++d.calls;
    });
    return response;
  }
  // A request as a gateway's gRPC transport sends it, whatever transport the
  // simulation uses: stamped with a nonce and a timestamp, with the device's
  // Ed25519 signature beside it. HTTP/2 and TLS framing are not counted.
  template <typename Request>
  static uint64_t SentBytes(const Request& request) {
    Request stamped = request;
    // Any time from 1971 to 2109 has the timestamp width of today (6 varint bytes).
    auth::StampHeader(stamped.mutable_header(), absl::FromUnixMillis(int64_t{1} << 41));
    return stamped.ByteSizeLong() + crypto_sign_BYTES;
  }

  Tracker* tracker_;
  std::string id_;
};

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_TRACKER_H_
