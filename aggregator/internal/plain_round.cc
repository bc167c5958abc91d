#include "aggregator/internal/plain_round.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/clipping.h"
#include "tinyfed/proto/plain_update.h"

namespace tinyfed::aggregator::internal {

using absl::StrCat;

PlainRound::PlainRound(const Config& config, int64_t id, const std::vector<std::string>& devices,
                       const std::vector<uint32_t>& ids, v1::RoundTask task, size_t head_size, double noise_multiplier,
                       dp::Seed noise_seed, Charge charge, absl::Time now)
    : Round(id, devices, ids, std::move(task), now, config.training_timeout),
      config_(config),
      head_size_(head_size),
      noise_multiplier_(noise_multiplier),
      noise_seed_(noise_seed),
      charge_(std::move(charge)) {}

absl::StatusOr<std::optional<RoundEnd>> PlainRound::Submit(const v1::SubmitRequest& request, absl::Time now) {
  const v1::RequestHeader& h = request.header();
  if (h.phase() != v1::PHASE_UPDATE || !request.has_update()) {
    return absl::InvalidArgumentError("an update goes with header.phase PHASE_UPDATE and an update payload");
  }
  const v1::PlainUpdate& u = request.update();
  if (u.round_id() != h.round_id()) {
    return absl::InvalidArgumentError(
        StrCat("update.round_id ", u.round_id(), " differs from header.round_id ", h.round_id()));
  }
  std::string bytes;
  u.SerializeToString(&bytes);
  if (Repeats(h, bytes)) return std::nullopt;
  TINYFED_ASSIGN_OR_RETURN(std::vector<float> values, proto::DecodePlainUpdate(u, head_size_));
  TINYFED_ASSIGN_OR_RETURN(Member * m, Submitter(h, std::nullopt));
  // The aggregator enforces the clip itself: the DP noise is calibrated to it.
  dp::ClipL2(values, config_.dp.clip);
  m->submitted.emplace(v1::PHASE_UPDATE, std::move(bytes));
  updates_[h.device_id()] = std::move(values);
  if (!AllSubmitted(v1::PHASE_UPDATE)) return std::nullopt;
  return Finish(now);
}

std::optional<RoundEnd> PlainRound::CloseOnDeadline(absl::Time now) { return Finish(now); }

RoundEnd PlainRound::Finish(absl::Time now) {
  DropSilent(v1::PHASE_UPDATE, "update", now);
  const int s = static_cast<int>(updates_.size());
  const int min_survivors = config_.min_cohort;
  if (s < min_survivors) {
    return RoundEnd::Aborted(StrCat("only ", s, " updates arrived; at least ", min_survivors, " are needed"));
  }
  std::vector<double> sum(head_size_, 0.0);
  for (const auto& [device, update] : updates_) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += update[i];
  }
  RoundEnd end;
  end.survivors = s;
  end.mean.assign(sum.begin(), sum.end());
  if (charge_) {
    // Central DP: the trusted aggregator adds N(0, (zC)^2) to the sum once.
    auto rng = dp::SecureRandom::FromSeed(noise_seed_);
    dp::AddGaussianNoise(end.mean, noise_multiplier_ * config_.dp.clip, *rng);
    auto charge = charge_(s);
    if (!charge.ok()) return RoundEnd::Aborted(std::string(charge.status().message()));
    end.charge = *std::move(charge);
  }
  for (float& v : end.mean) v /= static_cast<float>(s);
  return end;
}

}  // namespace tinyfed::aggregator::internal
