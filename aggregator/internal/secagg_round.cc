#include "aggregator/internal/secagg_round.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/proto/authentication.h"

namespace tinyfed::aggregator::internal {
namespace {

using absl::StrCat;

const SecAggPhase* PhaseRow(v1::Phase phase) {
  for (const SecAggPhase& row : kSecAggPhases) {
    if (row.phase == phase) return &row;
  }
  return nullptr;
}

v1::Phase PhaseOfMessage(const v1::SecAggClientMessage& m) {
  switch (m.phase_case()) {
    case v1::SecAggClientMessage::kAdvertiseKeys:
      return v1::PHASE_ADVERTISE_KEYS;
    case v1::SecAggClientMessage::kShareKeys:
      return v1::PHASE_SHARE_KEYS;
    case v1::SecAggClientMessage::kMaskedInput:
      return v1::PHASE_MASKED_INPUT;
    case v1::SecAggClientMessage::kUnmasking:
      return v1::PHASE_UNMASKING;
    default:
      return v1::PHASE_UNSPECIFIED;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SecAggRound>> SecAggRound::Start(const Config& config, int64_t id,
                                                                const std::vector<std::string>& devices,
                                                                const std::vector<uint32_t>& ids, SecAggPlan plan,
                                                                DeviceRegistry& registry, Charge charge,
                                                                OnRejected on_rejected, absl::Time now) {
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<secagg::Server> server,
                           secagg::Server::Create(plan.params, plan.min_survivors));
  return std::unique_ptr<SecAggRound>(new SecAggRound(config, id, devices, ids, std::move(plan), std::move(server),
                                                      registry, std::move(charge), std::move(on_rejected), now));
}

SecAggRound::SecAggRound(const Config& config, int64_t id, const std::vector<std::string>& devices,
                         const std::vector<uint32_t>& ids, SecAggPlan plan, std::unique_ptr<secagg::Server> server,
                         DeviceRegistry& registry, Charge charge, OnRejected on_rejected, absl::Time now)
    : Round(id, devices, ids, plan.task, now, config.training_timeout),
      config_(config),
      plan_(std::move(plan)),
      server_(std::move(server)),
      registry_(registry),
      charge_(std::move(charge)),
      on_rejected_(std::move(on_rejected)),
      current_(&kSecAggPhases[0]) {}

int SecAggRound::CompareToCurrent(v1::Phase awaited) const {
  const SecAggPhase* row = PhaseRow(awaited);
  return row == nullptr ? -1 : static_cast<int>(row - current_);
}

const v1::SecAggServerMessage* SecAggRound::MessageTo(uint32_t id) const {
  const auto out = outgoing_.find(id);
  return out == outgoing_.end() ? nullptr : &out->second;
}

absl::StatusOr<std::optional<RoundEnd>> SecAggRound::Submit(const v1::SubmitRequest& request, absl::Time now) {
  const v1::RequestHeader& h = request.header();
  const v1::SecAggClientMessage& message = request.message();
  if (PhaseOfMessage(message) != h.phase()) {
    return absl::InvalidArgumentError(StrCat("header.phase is ", v1::Phase_Name(h.phase()), " but the message carries ",
                                             v1::Phase_Name(PhaseOfMessage(message))));
  }
  if (message.round_id() != h.round_id()) {
    return absl::InvalidArgumentError(
        StrCat("message.round_id ", message.round_id(), " differs from header.round_id ", h.round_id()));
  }
  std::string bytes;
  message.SerializeToString(&bytes);
  if (Repeats(h, bytes)) return std::nullopt;
  TINYFED_ASSIGN_OR_RETURN(Member * m, Submitter(h, message.sender()));
  TINYFED_RETURN_IF_ERROR(CheckContributors(request));
  if (message.has_advertise_keys()) {
    // Neighbours check this signature too; refusing a bad one here names
    // the culprit instead of failing the neighbours' rounds.
    const v1::AdvertiseKeys& a = message.advertise_keys();
    TINYFED_ASSIGN_OR_RETURN(models::PublicKey key, registry_.KeyOf(h.device_id()));
    if (!models::VerifySignature(key,
                                 proto::AdvertiseKeysSigningMessage(h.round_id(), message.sender(), h.device_id(),
                                                                    a.encryption_public_key(), a.masking_public_key()),
                                 a.signature())) {
      return absl::InvalidArgumentError(StrCat("advertise_keys.signature is not device ", h.device_id(), "'s"));
    }
  }
  TINYFED_RETURN_IF_ERROR(server_->Receive(message));
  if (message.has_masked_input()) contributors_[message.sender()] = std::max(1u, request.contributors());
  m->submitted.emplace(h.phase(), std::move(bytes));
  if (!AllSubmitted(h.phase())) return std::nullopt;
  return ClosePhase(now);
}

absl::Status SecAggRound::CheckContributors(const v1::SubmitRequest& request) const {
  const uint32_t n = request.contributors();
  if (config_.national_clinics == 0) {
    if (n == 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        "contributors is for regional aggregators' sums: this aggregator's participants are gateways");
  }
  if (!request.message().has_masked_input()) {
    if (n == 0) return absl::OkStatus();
    return absl::InvalidArgumentError("contributors goes with a masked input only");
  }
  if (n == 0 || n > kMaxContributors) {
    return absl::InvalidArgumentError(
        StrCat("a regional sum's contributors must be 1 to ", kMaxContributors, " clinics (got ", n, ")"));
  }
  return absl::OkStatus();
}

std::optional<RoundEnd> SecAggRound::CloseOnDeadline(absl::Time now) { return ClosePhase(now); }

std::optional<RoundEnd> SecAggRound::ClosePhase(absl::Time now) {
  const SecAggPhase& closing = *current_;
  const int dropped_now = DropSilent(closing.phase, StrCat(closing.name, " message"), now);
  const int answered = static_cast<int>(
      std::count_if(members_.begin(), members_.end(), [](const auto& entry) { return !entry.second.dropped; }));
  auto out = server_->AdvancePhase();
  if (!out.ok()) {
    return RoundEnd::Aborted(StrCat(closing.name, " closed with ", answered, " clients: ", out.status().message()));
  }
  if (closing.next == v1::PHASE_RESULT) return Finish();
  if (closing.phase == v1::PHASE_MASKED_INPUT) DropRejected();
  outgoing_.clear();
  for (v1::SecAggServerMessage& message : *out) {
    // Name each neighbour's device and enrolled key next to its signed keys.
    if (message.has_share_keys()) {
      for (v1::NeighborKeys& nk : *message.mutable_share_keys()->mutable_neighbors()) {
        if (nk.id() >= device_of_.size()) continue;
        nk.set_device_id(device_of_[nk.id()]);
        if (auto key = registry_.KeyOf(nk.device_id()); key.ok()) nk.set_device_public_key(models::KeyBytes(*key));
      }
    }
    outgoing_.emplace(message.recipient(), std::move(message));
  }
  current_ = PhaseRow(closing.next);
  deadline_ = now + config_.*(current_->timeout);
  base::LogEvent(spdlog::level::info, "phase_closed", {{"round", id_}, {"phase", closing.name}},
                 fmt::format("round {} phase {}: {} of {} answered {}, {} dropped", id_, current_->name, answered,
                             members_.size(), closing.name, dropped_now));
  return std::nullopt;
}

void SecAggRound::DropRejected() {
  std::map<uint32_t, std::vector<std::string>> accusers;
  for (const secagg::Accusation& a : server_->Accusations()) {
    if (a.accuser < device_of_.size() && a.accused < device_of_.size()) {
      accusers[a.accused].push_back(device_of_[a.accuser]);
    }
  }
  for (const auto& [id, by] : accusers) {
    const std::string& device = device_of_[id];
    members_[device].dropped = true;
    on_rejected_(device, by);
  }
}

RoundEnd SecAggRound::Finish() {
  auto sum = server_->Result();
  const std::vector<uint32_t> survivors = server_->Survivors();
  if (!sum.ok() || survivors.empty()) return RoundEnd::Aborted(StrCat("no secure sum: ", sum.status().message()));
  // Clinics in the sum: each survivor's own update, or a region's clinics.
  int s = 0;
  for (uint32_t id : survivors) s += config_.national_clinics > 0 ? static_cast<int>(contributors_.at(id)) : 1;
  if (plan_.regional) {
    // Forwarded still encoded: only the national aggregator decodes, and
    // only the national sum.
    RoundEnd end;
    end.survivors = s;
    end.secure_sum = *std::move(sum);
    for (uint32_t id : survivors) end.survivor_devices.push_back(device_of_[id]);
    return end;
  }
  auto decoded = dp::DdgDecodeSum(plan_.ddg, *sum, plan_.rotation_seed);
  if (!decoded.ok()) return RoundEnd::Aborted(StrCat("decoding the sum: ", decoded.status().message()));
  RoundEnd end;
  end.mean.resize(decoded->size());
  double norm2 = 0.0;
  for (size_t i = 0; i < end.mean.size(); ++i) {
    end.mean[i] = static_cast<float>((*decoded)[i] / s);
    norm2 += static_cast<double>(end.mean[i]) * end.mean[i];
  }
  // One wrapped sum or unclipped update must not wreck the model.
  if (const double bound = dp::DdgMeanNormBound(plan_.ddg, s); std::sqrt(norm2) > bound) {
    return RoundEnd::Aborted(StrCat("the mean update's norm ", std::sqrt(norm2), " exceeds ", bound,
                                    ", the most clipped updates and the noise allow: a wrapped sum or an unclipped "
                                    "update; nothing is published"));
  }
  auto charge = charge_(s);
  if (!charge.ok()) return RoundEnd::Aborted(std::string(charge.status().message()));
  end.survivors = s;
  end.charge = *std::move(charge);
  end.secure_sum = *std::move(sum);
  for (uint32_t id : survivors) end.survivor_devices.push_back(device_of_[id]);
  return end;
}

}  // namespace tinyfed::aggregator::internal
