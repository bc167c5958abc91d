// What the clinics of a one-process federation do between rounds: answer
// their clinicians' cases (and report), check in while a new model is in
// canary, and, as a fault, train on labels shifted by one.
#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sim/internal/metrics.h"
#include "sim/internal/one_process_federation.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::sim::internal {

void OneProcessFederation::ServeCases(int round) {
  const int cases = s_.clinics.cases_per_round;
  if (cases == 0) return;
  const FaultsSpec& f = s_.faults;
  for (size_t c = 0; c < clinics_.size(); ++c) {
    client::Client& gateway = *gateways_[c];
    if (gateway.model_version() == 0) continue;
    const Clinic& clinic = clinics_[c];
    const bool shifted =
        f.input_shift_round > 0 && round >= f.input_shift_round && !clinic.shifted_holdout.labels.empty();
    const models::Dataset& from = shifted ? clinic.shifted_holdout : clinic.holdout;
    // Distinct cases, as many as the slice holds: a small clinic's few
    // cases drawn again and again would not be a sample of its patients.
    std::mt19937_64 rng(s_.seed * 2'654'435'761u + static_cast<uint64_t>(round) * 1'000'003u + c);
    std::vector<size_t> order(from.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    order.resize(std::min(order.size(), static_cast<size_t>(cases)));
    for (size_t i : order) (void)gateway.Predict(from.sample(i));
    (void)gateway.SendTelemetry();  // best effort, as on a gateway
  }
}

absl::Status OneProcessFederation::SetLabels(const std::vector<size_t>& clinics, bool flipped) {
  for (size_t c : clinics) {
    const models::Dataset& train = clinics_[c].train;
    std::vector<client::Sample> samples = client::ToSamples(train);
    const int classes = std::max(1, train.num_classes());
    if (flipped) {
      for (client::Sample& sample : samples) sample.label = (sample.label + 1) % classes;
    }
    // The store holds as many as the clinic has: the new ones replace the old.
    TINYFED_RETURN_IF_ERROR(gateways_[c]->AddSamples(samples));
  }
  return absl::OkStatus();
}

void OneProcessFederation::FollowCanary(uint64_t version, RoundResult& rr) {
  if (version == 0 || !config_.rollout.enabled()) return;
  constexpr int kMaxPasses = 20;
  for (int pass = 0; pass < kMaxPasses && engine_->canary_version() == version; ++pass) {
    ++rr.canary_passes;
    for (size_t c = 0; c < clinics_.size() && engine_->canary_version() == version; ++c) {
      client::Client& gateway = *gateways_[c];
      const uint64_t before = gateway.model_version();
      if (!gateway.ParticipateOnce().ok()) continue;
      installed_[c].insert(gateway.model_version());
      if (gateway.model_version() != before) (void)gateway.SendTelemetry();
    }
    if (inproc_) env_.Advance(config_.poll_interval);
  }
  absl::StatusOr<std::vector<aggregator::RolloutRecord>> rollouts = state_->Rollouts(2);
  const aggregator::RolloutRecord* r = nullptr;
  if (rollouts.ok()) {
    for (const aggregator::RolloutRecord& x : *rollouts) {
      if (x.version == version) r = &x;
    }
  }
  if (!r || r->state == "canary") {
    rr.rollout = "in canary";
    return;
  }
  rr.rollout = r->state == "promoted" ? "promoted" : absl::StrCat("rolled back as v", r->rollback_version);
  if (r->state == "rolled_back") {
    // The row scores what the federation serves after the round: the
    // rollback; the model it replaced is scored beside it.
    absl::StatusOr<std::vector<aggregator::PublishedModel>> models = state_->Models();
    for (const aggregator::PublishedModel& m : models.ok() ? *models : std::vector<aggregator::PublishedModel>{}) {
      if (m.version != version) continue;
      if (absl::StatusOr<v1::ModelBundle> bad = aggregator::ReadPublishedBundle(m); bad.ok()) {
        absl::StrAppend(
            &rr.rollout, " (v", version, " scored ",
            absl::StrFormat("%.2f %%",
                            100 * Evaluate(bad->head(), scoring_.test_embeddings, scoring_.test_labels).accuracy),
            " on test)");
      }
    }
    const v1::Head served = engine_->latest_head();
    rr.test = Evaluate(served, scoring_.test_embeddings, scoring_.test_labels);
    if (!scoring_.validation->labels.empty()) {
      rr.validation_accuracy = Evaluate(served, scoring_.validation->embeddings, scoring_.validation->labels).accuracy;
    }
  }
  for (size_t c = 0; c < clinics_.size(); ++c) {
    if (installed_[c].contains(version) &&
        std::find(r->canary.begin(), r->canary.end(), clinics_[c].id) == r->canary.end()) {
      ++rr.installed_outside_canary;
    }
  }
}

void OneProcessFederation::RecordDrift(RoundResult& rr) const {
  absl::StatusOr<std::vector<aggregator::DriftFlag>> flags = state_->DriftFlags();
  if (!flags.ok()) return;
  for (const aggregator::DriftFlag& f : *flags) {
    if (f.scope == "fleet") {
      rr.drift_fleet = true;
    } else {
      ++rr.drift_devices;
    }
  }
}

}  // namespace tinyfed::sim::internal
