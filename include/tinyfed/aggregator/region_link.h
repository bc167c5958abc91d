// A regional aggregator's link to the national aggregator
// ([upstream] in its config). The region is one participant of each
// national round, a device of the national aggregator like a gateway, whose
// input is its clinics' secure sum:
//
//   check in         relay new national roots, mirror a newer national
//                    model (verified under the national roots)
//   task             the national round's task, whose model, training,
//                    patient-level DP and encoding the regional round copies
//   regional round   the region's engine selects its gateways and runs
//                    SecAgg+ with them; its sum stays encoded mod 2^bits
//   SecAgg+          the sum is this region's masked input to the national
//                    round, with the number of clinics in it
//   result           the national model is mirrored, and the region's
//                    gateways are told of it
//
// A region that fails along the way (its regional round aborted, a deadline
// missed, the process killed) is a dropout of the national round like any
// other. The link keeps its SecAgg+ secrets in memory only: a restarted
// regional aggregator starts with the next national round.
//
//   auto link = RegionLink::Create(*engine, std::move(national_transport), options);
//   std::thread t([&] { (*link)->Run(); });  ...  (*link)->Stop(); t.join();
#ifndef TINYFED_AGGREGATOR_REGION_LINK_H_
#define TINYFED_AGGREGATOR_REGION_LINK_H_

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/base/env.h"
#include "tinyfed/client/transport.h"
#include "tinyfed/models/signing.h"

namespace tinyfed::aggregator {

struct RegionLinkOptions {
  std::string device_id;         // the region's device id at the national aggregator
  std::filesystem::path dir;     // the region's device key (device.key, made at first start) and enrollment
  std::string enrollment_token;  // enrolls the key if it is not enrolled yet
  // Between check-ins when the national aggregator has no room or no round.
  absl::Duration poll_interval = absl::Seconds(1);
  // Simulation: derive the SecAgg+ key randomness from this seed, so that a
  // simulation repeats exactly.
  std::optional<uint64_t> simulation_seed;
  // Simulation: false ends this region's part in national round `round_id`
  // before it sends its `phase` message (a region killed there).
  std::function<bool(uint64_t round_id, v1::Phase phase)> on_phase;
};

// What one pass of the link did.
enum class LinkOutcome {
  kIdle,       // no national round had room for this region yet
  kCompleted,  // the national round published with this region's sum
  kDropped,    // this region's part ended without its sum in the result
  kClosed,     // the national federation closed
};

class RegionLink {
 public:
  // Reads (or makes) the device key in options.dir and signs every request
  // to `national` with it. `region` and `env` outlive the link.
  static absl::StatusOr<std::unique_ptr<RegionLink>> Create(RoundEngine& region,
                                                            std::unique_ptr<client::Transport> national,
                                                            RegionLinkOptions options,
                                                            base::Env& env = base::Env::Default());
  ~RegionLink();

  // One national check-in, and if this region is admitted its whole part
  // in that national round. An error is a link or storage failure that
  // outlasted the transport's retries: the caller tries again later.
  absl::StatusOr<LinkOutcome> RunOnce();
  // RunOnce until Stop or the national federation closes; failures are
  // logged and retried after the poll interval.
  void Run();
  void Stop();

 private:
  class NationalRound;  // one national round's part, in region_link.cc
  RegionLink(RoundEngine& region, std::unique_ptr<client::Transport> national, RegionLinkOptions options,
             base::Env& env, std::shared_ptr<const models::SigningKey> key);
  absl::Status EnrollIfNeeded();
  // Downloads `ref` from the national aggregator and mirrors it.
  absl::Status Mirror(const v1::ModelRef& ref);
  v1::RequestHeader Header(uint64_t round_id, v1::Phase phase) const;
  // False once stopped.
  bool SleepFor(absl::Duration d);

  RoundEngine& region_;
  std::unique_ptr<client::Transport> national_;
  const RegionLinkOptions options_;
  base::Env& env_;
  std::shared_ptr<const models::SigningKey> key_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_REGION_LINK_H_
