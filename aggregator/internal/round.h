// A round after its cohort is selected, as the engine drives it: SecAggRound
// (four SecAgg+ phases) or PlainRound (one update phase, a trusted
// aggregator). Each phase is a state with a deadline; it closes when every
// member still in the round has answered, or at the deadline, dropping the
// members that did not. A round never touches the ledger, the state or the
// published model: when its last phase closes it hands the engine a
// RoundEnd, which the engine charges and publishes (or records as aborted).
// Not thread-safe: the engine calls it under its lock.
#ifndef TINYFED_AGGREGATOR_INTERNAL_ROUND_H_
#define TINYFED_AGGREGATOR_INTERNAL_ROUND_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator::internal {

// How a round ended: either `aborted` says why, or `mean` is the survivors'
// mean update, ready to publish once `charge` (if any) is paid; a regional
// round ends with `secure_sum` alone, still encoded, to forward.
struct RoundEnd {
  std::string aborted;
  std::vector<float> mean;
  int survivors = 0;
  std::optional<dp::PrivacyCharge> charge;
  // SecAgg+ rounds: the raw sum and who is in it.
  std::vector<uint32_t> secure_sum;
  std::vector<std::string> survivor_devices;

  static RoundEnd Aborted(std::string reason) {
    RoundEnd end;
    end.aborted = std::move(reason);
    return end;
  }
};

// A RetryLater of `delay` (clamped to 10 ms .. 1 h) saying why.
v1::RetryLater RetryAfter(absl::Duration delay, std::string reason);

class Round {
 public:
  struct Member {
    uint32_t id = 0;  // SecAgg id (0..n-1)
    bool dropped = false;
    std::map<v1::Phase, std::string> submitted;  // serialized messages, for idempotent retries
  };

  virtual ~Round() = default;
  Round(const Round&) = delete;
  Round& operator=(const Round&) = delete;

  // A phase that closed: how long it ran, who answered, who was dropped.
  struct ClosedPhase {
    std::string name;
    absl::Duration took;
    int answered = 0;
    int dropped = 0;
  };

  int64_t id() const { return id_; }
  absl::Time deadline() const { return deadline_; }
  size_t cohort_size() const { return members_.size(); }
  const v1::RoundTask& task() const { return task_; }
  // True if `device` already submitted its `phase` message.
  bool HasSubmitted(const std::string& device, v1::Phase phase) const {
    return SubmittedBytes(device, phase) != nullptr;
  }
  // The round was replayed after a restart at `now`: the open phase gets at
  // least its whole timeout again, since its members could not reach the
  // aggregator while it was down.
  void Resume(absl::Time now) { deadline_ = std::max(deadline_, now + PhaseTimeout()); }

  // A member that restarted before sending its first message (its keys, or
  // its update) may take part again.
  bool MayRejoin(const std::string& device) const;
  // A member's Await (its header already checked by the engine): the task,
  // a wait, the server's message of an awaited phase, or that it was dropped.
  absl::StatusOr<v1::AwaitResponse> Await(const v1::RequestHeader& h, absl::Time now, absl::Duration poll) const;
  // A member's message for the current phase. The round's end if this
  // message closed the last phase.
  virtual absl::StatusOr<std::optional<RoundEnd>> Submit(const v1::SubmitRequest& request, absl::Time now) = 0;
  // The current phase's deadline passed: closes it. The round's end if
  // that was the last phase (or too few members are left).
  virtual std::optional<RoundEnd> CloseOnDeadline(absl::Time now) = 0;
  // The phases closed since the last call, oldest first (for metrics).
  std::vector<ClosedPhase> TakeClosedPhases() { return std::exchange(closed_phases_, {}); }

 protected:
  // `devices` sorted, `ids[i]` the SecAgg id of devices[i].
  Round(int64_t id, const std::vector<std::string>& devices, const std::vector<uint32_t>& ids, v1::RoundTask task,
        absl::Time now, absl::Duration first_timeout);

  // The phase members submit now, and its name in logs and errors.
  virtual v1::Phase phase() const = 0;
  virtual const char* phase_name() const = 0;
  // How long the current phase stays open.
  virtual absl::Duration PhaseTimeout() const = 0;
  // Where `awaited` (a SecAgg+ phase) stands against the current phase:
  // negative before it, 0 at it, positive past it.
  virtual int CompareToCurrent(v1::Phase awaited) const = 0;
  // The server's message to member `id` in the current phase, if it has one.
  virtual const v1::SecAggServerMessage* MessageTo(uint32_t id) const = 0;

  // The member's `phase` message as it was accepted, or null.
  const std::string* SubmittedBytes(const std::string& device, v1::Phase phase) const;
  // True if the member already submitted exactly `bytes` for h.phase(): a
  // retry after a lost acknowledgement, to acknowledge again even when the
  // phase has closed since (the member's message may have closed it, or an
  // aggregator restart may have come between the two).
  bool Repeats(const v1::RequestHeader& h, const std::string& bytes) const;
  // The member that may submit h.phase() now (whose SecAgg id is `sender`,
  // if the message names one), or why not; asked after Repeats, so a
  // message the member already sent for this phase is a different one: a
  // replay, FAILED_PRECONDITION.
  absl::StatusOr<Member*> Submitter(const v1::RequestHeader& h, std::optional<uint32_t> sender);
  // Every member still in the round has submitted `phase`.
  bool AllSubmitted(v1::Phase phase) const;
  // Closes the current phase at `now`: drops every member still in that has
  // not submitted `phase` (logging "no `what` by the deadline"), records the
  // phase as closed and starts the next one's clock; how many it dropped.
  int DropSilent(v1::Phase phase, const std::string& what, absl::Time now);

  const int64_t id_;
  absl::Time deadline_;
  std::map<std::string, Member> members_;
  std::vector<std::string> device_of_;  // SecAgg id -> device
  const v1::RoundTask task_;
  absl::Time phase_started_;
  std::vector<ClosedPhase> closed_phases_;
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_ROUND_H_
