#include "aggregator/internal/round.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/log_event.h"

namespace tinyfed::aggregator::internal {

using absl::FailedPreconditionError;
using absl::StrCat;

v1::RetryLater RetryAfter(absl::Duration delay, std::string reason) {
  v1::RetryLater r;
  const absl::Duration d = std::clamp(delay, absl::Milliseconds(10), absl::Hours(1));
  r.set_delay_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(d)));
  r.set_reason(std::move(reason));
  return r;
}

Round::Round(int64_t id, const std::vector<std::string>& devices, const std::vector<uint32_t>& ids, v1::RoundTask task,
             absl::Time now, absl::Duration first_timeout)
    : id_(id), deadline_(now + first_timeout), device_of_(devices.size()), task_(std::move(task)), phase_started_(now) {
  for (size_t i = 0; i < devices.size(); ++i) {
    members_[devices[i]].id = ids[i];
    device_of_[ids[i]] = devices[i];
  }
}

bool Round::MayRejoin(const std::string& device) const {
  const auto member = members_.find(device);
  return member != members_.end() && !member->second.dropped &&
         phase() == (task_.has_plain() ? v1::PHASE_UPDATE : v1::PHASE_ADVERTISE_KEYS) &&
         !member->second.submitted.contains(phase());
}

const std::string* Round::SubmittedBytes(const std::string& device, v1::Phase phase) const {
  const auto member = members_.find(device);
  if (member == members_.end()) return nullptr;
  const auto message = member->second.submitted.find(phase);
  return message == member->second.submitted.end() ? nullptr : &message->second;
}

absl::StatusOr<v1::AwaitResponse> Round::Await(const v1::RequestHeader& h, absl::Time now, absl::Duration poll) const {
  v1::AwaitResponse response;
  auto wait = [&](std::string why) {
    *response.mutable_wait() = RetryAfter(std::min(poll, deadline_ - now), std::move(why));
    return response;
  };
  auto dropped = [&](std::string why) {
    response.mutable_aborted()->set_round_id(static_cast<uint64_t>(id_));
    response.mutable_aborted()->set_reason(std::move(why));
    return response;
  };
  const auto member = members_.find(h.device_id());
  if (member == members_.end()) {
    return FailedPreconditionError(StrCat("device ", h.device_id(), " is not in the cohort of round ", id_));
  }
  if (member->second.dropped) return dropped("dropped from the round after missing a deadline");
  if (h.phase() == v1::PHASE_TASK) {
    *response.mutable_task() = task_;
    response.mutable_task()->set_secagg_id(member->second.id);
    if (phase() == v1::PHASE_ADVERTISE_KEYS) {
      response.mutable_task()->set_advertise_deadline_ms(
          static_cast<uint32_t>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline_ - now))));
    }
    return response;
  }
  if (h.phase() == v1::PHASE_RESULT) return wait(StrCat("round ", id_, " is in ", phase_name()));
  const int order = CompareToCurrent(h.phase());
  if (order > 0) return wait(StrCat("round ", id_, " is in ", phase_name()));
  if (order < 0) {
    return FailedPreconditionError(
        StrCat("round ", id_, " is in ", phase_name(), ", past ", v1::Phase_Name(h.phase())));
  }
  const v1::SecAggServerMessage* message = MessageTo(member->second.id);
  if (message == nullptr) return dropped("dropped from the round");
  *response.mutable_secagg() = *message;
  return response;
}

absl::StatusOr<Round::Member*> Round::Submitter(const v1::RequestHeader& h, std::optional<uint32_t> sender) {
  const auto member = members_.find(h.device_id());
  if (member == members_.end()) {
    return FailedPreconditionError(StrCat("device ", h.device_id(), " is not in the cohort of round ", id_));
  }
  Member& m = member->second;
  if (sender && *sender != m.id) {
    return absl::InvalidArgumentError(
        StrCat("message.sender ", *sender, " is not device ", h.device_id(), "'s SecAgg id"));
  }
  if (m.dropped) return FailedPreconditionError(StrCat("device ", h.device_id(), " was dropped from round ", id_));
  if (h.phase() != phase()) {
    return FailedPreconditionError(StrCat("round ", id_, " is in ", phase_name(), ", not ", v1::Phase_Name(h.phase())));
  }
  if (m.submitted.contains(h.phase())) {
    return FailedPreconditionError(StrCat("device ", h.device_id(), " already submitted a different ",
                                          v1::Phase_Name(h.phase()), " message in round ", id_));
  }
  return &m;
}

bool Round::Repeats(const v1::RequestHeader& h, const std::string& bytes) const {
  const std::string* previous = SubmittedBytes(h.device_id(), h.phase());
  return previous != nullptr && *previous == bytes;
}

bool Round::AllSubmitted(v1::Phase phase) const {
  return std::all_of(members_.begin(), members_.end(),
                     [&](const auto& entry) { return entry.second.dropped || entry.second.submitted.contains(phase); });
}

int Round::DropSilent(v1::Phase phase, const std::string& what, absl::Time now) {
  int dropped = 0, answered = 0;
  for (auto& [device, m] : members_) {
    if (m.dropped || m.submitted.contains(phase)) continue;
    m.dropped = true;
    ++dropped;
    base::LogEvent(spdlog::level::info, "device_dropped", {{"round", id_}, {"device", device}},
                   fmt::format("round {}: device {} dropped (no {} by the deadline)", id_, device, what));
  }
  for (const auto& [device, m] : members_) answered += m.dropped ? 0 : 1;
  closed_phases_.push_back(
      {.name = phase_name(), .took = now - phase_started_, .answered = answered, .dropped = dropped});
  phase_started_ = now;
  return dropped;
}

}  // namespace tinyfed::aggregator::internal
