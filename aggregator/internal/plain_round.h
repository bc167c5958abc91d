// A round without SecAgg+ (a trusted aggregator): one update phase, in
// which each member sends its clipped, possibly compressed update
// (proto/plain_update.h decodes it); the aggregator clips again, sums, adds
// central noise when dp.mode = central, and averages.
#ifndef TINYFED_AGGREGATOR_INTERNAL_PLAIN_ROUND_H_
#define TINYFED_AGGREGATOR_INTERNAL_PLAIN_ROUND_H_

#include <functional>
#include <memory>

#include "aggregator/internal/round.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/dp/secure_random.h"

namespace tinyfed::aggregator::internal {

class PlainRound final : public Round {
 public:
  using Charge = std::function<absl::StatusOr<dp::PrivacyCharge>(int survivors)>;

  // `charge` prices a round of central noise (dp.mode = central), drawn with
  // `noise_multiplier` from `noise_seed`; unset for dp.mode = off.
  PlainRound(const Config& config, int64_t id, const std::vector<std::string>& devices,
             const std::vector<uint32_t>& ids, v1::RoundTask task, size_t head_size, double noise_multiplier,
             dp::Seed noise_seed, Charge charge, absl::Time now);

  absl::StatusOr<std::optional<RoundEnd>> Submit(const v1::SubmitRequest& request, absl::Time now) override;
  std::optional<RoundEnd> CloseOnDeadline(absl::Time now) override;

 private:
  v1::Phase phase() const override { return v1::PHASE_UPDATE; }
  const char* phase_name() const override { return "update"; }
  absl::Duration PhaseTimeout() const override { return config_.training_timeout; }
  // Every SecAgg+ phase is past: a plain round has none.
  int CompareToCurrent(v1::Phase) const override { return -1; }
  const v1::SecAggServerMessage* MessageTo(uint32_t) const override { return nullptr; }
  RoundEnd Finish(absl::Time now);

  const Config& config_;
  const size_t head_size_;
  const double noise_multiplier_;
  const dp::Seed noise_seed_;
  const Charge charge_;
  std::map<std::string, std::vector<float>> updates_;  // decoded and clipped, by device
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_PLAIN_ROUND_H_
