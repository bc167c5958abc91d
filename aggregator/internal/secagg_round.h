// A round under SecAgg+: advertise_keys (clients train, encode and
// advertise keys), share_keys, masked_input, unmasking; then the sum of the
// survivors is decoded (dp/ddg.h) into their mean update. Each phase is a
// row of kSecAggPhases naming its deadline and its successor.
//
// In a national round (rounds.national_clinics) the participants are
// regional aggregators whose inputs are their clinics' secure sums, still
// encoded mod 2^bits with this round's encoding: the decoded sum is then
// the national sum, averaged over the clinics the surviving regions say
// they hold. A region is trusted with that count (a wrong one scales the
// mean, which the norm check bounds), never with another region's sum.
// A regional round (plan.regional) ends with its sum still encoded, for the
// regional aggregator to forward: nothing is decoded or charged there.
#ifndef TINYFED_AGGREGATOR_INTERNAL_SECAGG_ROUND_H_
#define TINYFED_AGGREGATOR_INTERNAL_SECAGG_ROUND_H_

#include <functional>
#include <memory>

#include "aggregator/internal/round.h"
#include "aggregator/internal/round_plan.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/secure_agg/server.h"

namespace tinyfed::aggregator::internal {

// One phase of a SecAgg+ round and its transition.
struct SecAggPhase {
  v1::Phase phase;
  const char* name;
  absl::Duration Config::*timeout;  // how long the phase stays open
  v1::Phase next;                   // PHASE_RESULT after the last
};
inline constexpr SecAggPhase kSecAggPhases[] = {
    {v1::PHASE_ADVERTISE_KEYS, "advertise_keys", &Config::training_timeout, v1::PHASE_SHARE_KEYS},
    {v1::PHASE_SHARE_KEYS, "share_keys", &Config::share_keys_timeout, v1::PHASE_MASKED_INPUT},
    {v1::PHASE_MASKED_INPUT, "masked_input", &Config::masked_input_timeout, v1::PHASE_UNMASKING},
    {v1::PHASE_UNMASKING, "unmasking", &Config::unmasking_timeout, v1::PHASE_RESULT},
};

class SecAggRound final : public Round {
 public:
  // Told of each device whose key shares neighbours rejected, with them.
  using OnRejected = std::function<void(const std::string& device, const std::vector<std::string>& by)>;
  using Charge = std::function<absl::StatusOr<dp::PrivacyCharge>(int survivors)>;

  // `devices` sorted, ids[i] the SecAgg id of devices[i]. `charge` prices
  // the round by its survivors; `devices_registry` holds the keys that sign
  // advertised SecAgg+ keys.
  static absl::StatusOr<std::unique_ptr<SecAggRound>> Start(const Config& config, int64_t id,
                                                            const std::vector<std::string>& devices,
                                                            const std::vector<uint32_t>& ids, SecAggPlan plan,
                                                            DeviceRegistry& devices_registry, Charge charge,
                                                            OnRejected on_rejected, absl::Time now);

  absl::StatusOr<std::optional<RoundEnd>> Submit(const v1::SubmitRequest& request, absl::Time now) override;
  std::optional<RoundEnd> CloseOnDeadline(absl::Time now) override;

 private:
  SecAggRound(const Config& config, int64_t id, const std::vector<std::string>& devices,
              const std::vector<uint32_t>& ids, SecAggPlan plan, std::unique_ptr<secagg::Server> server,
              DeviceRegistry& registry, Charge charge, OnRejected on_rejected, absl::Time now);

  v1::Phase phase() const override { return current_->phase; }
  const char* phase_name() const override { return current_->name; }
  absl::Duration PhaseTimeout() const override { return config_.*(current_->timeout); }
  int CompareToCurrent(v1::Phase awaited) const override;
  const v1::SecAggServerMessage* MessageTo(uint32_t id) const override;

  // Closes the current phase: drops the silent, advances the SecAgg+ server,
  // routes its messages and opens the next phase (or ends the round).
  std::optional<RoundEnd> ClosePhase(absl::Time now);
  // A regional aggregator's masked input says how many clinics its sum
  // holds (rounds.national_clinics); a gateway's says nothing.
  absl::Status CheckContributors(const v1::SubmitRequest& request) const;
  // Drops the members whose key shares neighbours rejected.
  void DropRejected();
  // Decodes the survivors' sum into their mean update (a regional round:
  // hands the sum over encoded).
  RoundEnd Finish();

  const Config& config_;
  const SecAggPlan plan_;
  std::unique_ptr<secagg::Server> server_;
  DeviceRegistry& registry_;
  const Charge charge_;
  const OnRejected on_rejected_;
  const SecAggPhase* current_;
  std::map<uint32_t, v1::SecAggServerMessage> outgoing_;  // the current phase's, by recipient
  std::map<uint32_t, uint32_t> contributors_;             // clinics in each masked input, by SecAgg id
  static constexpr uint32_t kMaxContributors = 1 << 20;
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_SECAGG_ROUND_H_
