// What the round engine records in its metrics (metrics.h): the latest
// model and privacy spent, each closed phase, and the state's gauges read
// at scrape time.
#include <algorithm>

#include "aggregator/internal/engine_resources.h"
#include "aggregator/internal/model_publisher.h"
#include "aggregator/internal/round.h"
#include "tinyfed/aggregator/round_engine.h"

namespace tinyfed::aggregator {

void RoundEngine::RecordPublishedLocked(double epsilon_spent) {
  if (publisher_->has_model()) {
    metrics_.SetGauge("tinyfed_model_version", {}, static_cast<double>(publisher_->latest().ref.version()));
  }
  metrics_.SetGauge("tinyfed_epsilon_spent", {}, epsilon_spent);
  metrics_.SetGauge("tinyfed_epsilon_remaining", {}, std::max(0.0, config_.dp.epsilon_budget - epsilon_spent));
}

void RoundEngine::RecordClosedPhasesLocked() {
  if (!round_) return;
  for (const internal::Round::ClosedPhase& p : round_->TakeClosedPhases()) {
    metrics_.Observe("tinyfed_round_phase_seconds", {{"phase", p.name}}, absl::ToDoubleSeconds(p.took));
    metrics_.SetGauge("tinyfed_round_survivors", {{"phase", p.name}}, p.answered);
    metrics_.AddCounter("tinyfed_round_dropouts_total", {{"phase", p.name}}, p.dropped);
  }
}

void RoundEngine::CollectStateMetricsAtScrape() {
  metrics_.SetCollector([this](Metrics& m) {
    absl::MutexLock collecting(&mu_);
    if (auto population = res_->state->PopulationSize(); population.ok()) {
      m.SetGauge("tinyfed_population", {}, static_cast<double>(*population));
    }
    if (auto bytes = res_->state->DatabaseBytes(); bytes.ok()) {
      m.SetGauge("tinyfed_state_bytes", {}, static_cast<double>(*bytes));
    }
  });
}

}  // namespace tinyfed::aggregator
