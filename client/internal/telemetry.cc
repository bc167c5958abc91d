#include "client/internal/telemetry.h"

#include <algorithm>

#include "tinyfed/client/head_trainer.h"
#include "tinyfed/models/decision_threshold.h"

namespace tinyfed::client::internal {

absl::StatusOr<v1::Telemetry> CollectTelemetry(GatewayState& g) {
  v1::Telemetry t;
  auto spent = g.ledger->Spent();
  if (spent.ok()) t.set_epsilon_spent(spent->epsilon);
  t.set_epsilon_budget(g.config.privacy_budget.epsilon);
  absl::MutexLock lock(&g.mu);
  t.set_model_version(g.version);
  t.set_model_status(g.model_status);
  t.set_rounds_declined(static_cast<uint32_t>(g.rounds_declined));
  t.set_privacy_status(g.privacy_status);
  t.set_rounds_ineligible(static_cast<uint32_t>(g.rounds_ineligible));
  t.set_eligibility_status(g.eligibility_status);
  t.set_predictions(g.predictions);
  t.set_confirmations(g.confirmations);
  t.set_overrides(g.overrides);
  for (uint32_t h : g.recent_confidence) t.add_recent_confidence_histogram(h);
  for (uint32_t c : g.recent_classes) t.add_recent_predicted_classes(c);
  if (g.personal && g.personal->for_version == g.version) {
    t.set_personal_holdout_accuracy(static_cast<float>(g.personal->personal_accuracy));
    t.set_personal_head_served(g.personal->served);
  }
  if (!g.interpreter) return t;
  absl::StatusOr<std::vector<Sample>> samples;
  {
    absl::MutexLock store_lock(&g.store_mu);
    samples = g.store->ReadAll();
  }
  if (!samples.ok()) return samples.status();
  models::Interpreter& interpreter = *g.interpreter;
  std::vector<uint64_t> counts(static_cast<size_t>(interpreter.num_classes()), 0);
  std::vector<uint32_t> predicted(counts.size(), 0);
  std::vector<uint32_t> histogram(10, 0), replaced_histogram(10, 0);
  uint32_t held = 0, correct = 0, replaced_correct = 0, regressions = 0, improvements = 0;
  auto bin = [](float confidence) { return std::min<size_t>(9, static_cast<size_t>(confidence * 10.0f)); };
  for (const Sample& sample : *samples) {
    if (sample.label < 0 || sample.label >= interpreter.num_classes() ||
        sample.features.size() != interpreter.input_size()) {
      continue;
    }
    ++counts[static_cast<size_t>(sample.label)];
    if (!InHoldout(KeyOf(sample), g.config.holdout_fraction)) continue;
    const models::Prediction p = interpreter.Predict(sample.features);
    ++held;
    correct += p.label == sample.label;
    ++histogram[bin(p.confidence)];
    ++predicted[static_cast<size_t>(p.label)];
    if (g.replaced) {
      const std::vector<float> logits = HeadLogits(g.replaced->head, interpreter.embedding());
      const int label = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      float confidence = 0.0f;
      (void)models::DecideWithThreshold(logits, label, 0.0, &confidence);  // threshold 0: p is the label's
      replaced_correct += label == sample.label;
      regressions += label == sample.label && p.label != sample.label;
      improvements += label != sample.label && p.label == sample.label;
      ++replaced_histogram[bin(confidence)];
    }
  }
  if (g.replaced && held > 0) {
    t.set_replaced_model_version(g.replaced->version);
    t.set_replaced_holdout_accuracy(static_cast<float>(replaced_correct) / held);
    for (uint32_t h : replaced_histogram) t.add_replaced_confidence_histogram(h);
    t.set_regressions(regressions);
    t.set_improvements(improvements);
  }
  for (uint64_t c : counts) t.add_class_counts(c);
  for (uint32_t h : histogram) t.add_confidence_histogram(h);
  for (uint32_t c : predicted) t.add_holdout_predicted_classes(c);
  t.set_holdout_samples(held);
  t.set_holdout_accuracy(held ? static_cast<float>(correct) / held : 0.0f);
  return t;
}

void ForgetReportedCases(GatewayState& g, const v1::Telemetry& sent) {
  absl::MutexLock lock(&g.mu);
  auto subtract = [](std::vector<uint32_t>& counts, const auto& reported) {
    for (int i = 0; i < reported.size() && static_cast<size_t>(i) < counts.size(); ++i) {
      counts[static_cast<size_t>(i)] -= std::min(counts[static_cast<size_t>(i)], reported[i]);
    }
  };
  subtract(g.recent_confidence, sent.recent_confidence_histogram());
  subtract(g.recent_classes, sent.recent_predicted_classes());
}

}  // namespace tinyfed::client::internal
