#include "sim/internal/metrics.h"

#include <algorithm>
#include <cmath>

#include "spdlog/spdlog.h"
#include "tinyfed/client/head_trainer.h"
#include "tinyfed/models/decision_threshold.h"
#include "tinyfed/models/evaluate.h"

namespace tinyfed::sim::internal {

std::vector<double> ClassProbabilities(const v1::Head& head, std::span<const float> embeddings, size_t samples, int c) {
  const size_t k = head.num_classes(), dim = head.in_features();
  std::vector<double> out, logits(k);
  for (size_t i = 0; i < samples; ++i) {
    const float* e = embeddings.data() + i * dim;
    for (size_t j = 0; j < k; ++j) {
      double z = head.bias(static_cast<int>(j));
      for (size_t d = 0; d < dim; ++d) z += head.weights(static_cast<int>(j * dim + d)) * e[d];
      logits[j] = z;
    }
    const double top = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (double z : logits) sum += std::exp(z - top);
    out.push_back(std::exp(logits[static_cast<size_t>(c)] - top) / sum);
  }
  return out;
}

Metrics EvaluateAtThreshold(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels,
                            int positive, double threshold) {
  const size_t k = head.num_classes(), dim = head.in_features();
  models::ConfusionMatrix confusion(static_cast<int>(k));
  std::vector<float> logits(k);
  for (size_t i = 0; i < labels.size(); ++i) {
    for (size_t c = 0; c < k; ++c) {
      double z = head.bias(static_cast<int>(c));
      for (size_t d = 0; d < dim; ++d) z += head.weights(static_cast<int>(c * dim + d)) * embeddings[i * dim + d];
      logits[c] = static_cast<float>(z);
    }
    float probability = 0.0f;
    confusion.Add(labels[i], models::DecideWithThreshold(logits, positive, threshold, &probability));
  }
  Metrics m;
  m.accuracy = confusion.accuracy();
  auto number = [](double v) { return std::isnan(v) ? 0.0 : v; };
  for (int c = 0; c < static_cast<int>(k); ++c) {
    m.sensitivity.push_back(number(confusion.sensitivity(c)));
    m.specificity.push_back(number(confusion.specificity(c)));
  }
  return m;
}

Metrics Evaluate(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels) {
  const size_t k = head.num_classes(), dim = head.in_features();
  models::ConfusionMatrix confusion(static_cast<int>(k));
  std::vector<double> logits(k);
  double loss = 0.0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* e = embeddings.data() + i * dim;
    for (size_t c = 0; c < k; ++c) {
      double z = head.bias(static_cast<int>(c));
      for (size_t j = 0; j < dim; ++j) z += head.weights(static_cast<int>(c * dim + j)) * e[j];
      logits[c] = z;
    }
    const size_t best = static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    double sum = 0.0;
    for (double z : logits) sum += std::exp(z - logits[best]);
    loss += std::log(sum) - (logits[static_cast<size_t>(labels[i])] - logits[best]);
    confusion.Add(labels[i], static_cast<int>(best));
  }
  Metrics m;
  m.accuracy = confusion.accuracy();
  m.loss = labels.empty() ? 0.0 : loss / static_cast<double>(labels.size());
  // A class absent from the data reports 0, not NaN, so JSON stays numeric.
  auto number = [](double v) { return std::isnan(v) ? 0.0 : v; };
  for (int c = 0; c < static_cast<int>(k); ++c) {
    m.sensitivity.push_back(number(confusion.sensitivity(c)));
    m.specificity.push_back(number(confusion.specificity(c)));
  }
  return m;
}

CaseMix::CaseMix(const Clinic& clinic, std::span<const int> test_labels, size_t classes)
    : test_labels_(test_labels), weight_(classes, 0.0) {
  std::vector<double> share(classes, 0.0), tested(classes, 0.0);
  for (const models::Dataset* slice : {&clinic.train, &clinic.holdout}) {
    for (int y : slice->labels) share[static_cast<size_t>(y)] += 1.0;
  }
  for (int y : test_labels) tested[static_cast<size_t>(y)] += 1.0;
  double covered = 0.0;
  for (size_t c = 0; c < classes; ++c) covered += tested[c] > 0 ? share[c] : 0.0;
  for (size_t c = 0; c < classes; ++c) {
    if (tested[c] > 0 && covered > 0) weight_[c] = share[c] / covered / tested[c];
  }
}

double CaseMix::Accuracy(const std::vector<bool>& right) const {
  double sum = 0.0;
  for (size_t i = 0; i < test_labels_.size() && i < right.size(); ++i) {
    if (right[i]) sum += weight_[static_cast<size_t>(test_labels_[i])];
  }
  return sum;
}

bool MeasuresOnCaseMix(const Scenario& s) { return s.partition.shift == FeatureShift::kNone; }

std::vector<bool> RightAnswers(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels) {
  const size_t dim = head.in_features();
  std::vector<bool> right(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::vector<float> z = client::HeadLogits(head, embeddings.subspan(i * dim, dim));
    right[i] = std::max_element(z.begin(), z.end()) - z.begin() == labels[i];
  }
  return right;
}

v1::Head TrainFrom(v1::Head head, std::span<const float> embeddings, std::span<const int> labels, int epochs,
                   const v1::TrainingSettings& t, uint64_t seed) {
  client::HeadTrainingTask task{.epochs = epochs,
                                .batch_size = static_cast<int>(t.batch_size()),
                                .learning_rate = t.learning_rate(),
                                .momentum = t.momentum(),
                                .weight_decay = t.weight_decay(),
                                .seed = seed,
                                .cosine_decay = true};
  if (epochs > 0 && !labels.empty()) {
    if (auto s = client::TrainHead(&head, embeddings, labels, task); !s.ok()) {
      spdlog::warn("head training failed: {}", s.ToString());
    }
  }
  return head;
}

void FinishReport(const Scenario& s, const std::vector<Clinic>& clinics, const v1::Head& federated,
                  std::span<const float> test_embeddings, std::span<const int> test_labels,
                  const EvaluationSet& validation, SimulationReport& report) {
  report.federated = Evaluate(federated, test_embeddings, test_labels);
  if (!validation.labels.empty())
    report.federated_validation = Evaluate(federated, validation.embeddings, validation.labels);
  if (report.positive_class >= 0 && !validation.labels.empty()) {
    const auto p =
        ClassProbabilities(federated, validation.embeddings, validation.labels.size(), report.positive_class);
    std::vector<double> positives;
    for (size_t i = 0; i < p.size(); ++i) {
      if (validation.labels[i] == report.positive_class) positives.push_back(p[i]);
    }
    report.threshold = models::ThresholdForSensitivity(positives, s.decision.target_sensitivity);
    report.federated_at_threshold =
        EvaluateAtThreshold(federated, test_embeddings, test_labels, report.positive_class, report.threshold);
  }
  std::vector<bool> right_on_test, right_on_validation;
  if (MeasuresOnCaseMix(s)) {
    right_on_test = RightAnswers(federated, test_embeddings, test_labels);
    right_on_validation = RightAnswers(federated, validation.embeddings, validation.labels);
  }
  for (size_t c = 0; c < clinics.size(); ++c) {
    const Clinic& clinic = clinics[c];
    ClinicResult& r = report.clinics[c];
    r.federated = Evaluate(federated, clinic.holdout_embeddings, clinic.holdout.labels).accuracy;
    if (MeasuresOnCaseMix(s)) {
      r.test_mix.federated = CaseMix(clinic, test_labels, federated.num_classes()).Accuracy(right_on_test);
      r.validation_mix.federated =
          CaseMix(clinic, validation.labels, federated.num_classes()).Accuracy(right_on_validation);
    }
    const v1::Head mine = TrainFrom(federated, clinic.train_embeddings, clinic.train.labels, s.personalization_epochs,
                                    s.federation.training, s.seed);
    r.personalized = Evaluate(mine, clinic.holdout_embeddings, clinic.holdout.labels).accuracy;
  }
}

void ScoreBaselines(const Scenario& s, const std::vector<Clinic>& clinics, const v1::Head& zero,
                    std::span<const float> test_embeddings, std::span<const int> test_labels,
                    const EvaluationSet& validation, SimulationReport& report) {
  std::vector<float> union_embeddings;
  std::vector<int> union_labels;
  for (const Clinic& c : clinics) {
    union_embeddings.insert(union_embeddings.end(), c.train_embeddings.begin(), c.train_embeddings.end());
    union_labels.insert(union_labels.end(), c.train.labels.begin(), c.train.labels.end());
  }
  const v1::TrainingSettings& t = s.federation.training;
  const v1::Head centralized = TrainFrom(zero, union_embeddings, union_labels, s.baseline_epochs, t, s.seed);
  report.centralized = Evaluate(centralized, test_embeddings, test_labels);
  if (!validation.labels.empty()) {
    report.centralized_validation = Evaluate(centralized, validation.embeddings, validation.labels);
  }
  for (const Clinic& c : clinics) {
    ClinicResult r;
    r.id = c.id;
    r.train_samples = c.train.size();
    r.holdout_samples = c.holdout.size();
    const v1::Head local = TrainFrom(zero, c.train_embeddings, c.train.labels, s.baseline_epochs, t, s.seed);
    r.local_only = Evaluate(local, c.holdout_embeddings, c.holdout.labels).accuracy;
    r.local_only_on_test = Evaluate(local, test_embeddings, test_labels).accuracy;
    if (MeasuresOnCaseMix(s)) {
      const size_t classes = zero.num_classes();
      r.test_mix.local_only =
          CaseMix(c, test_labels, classes).Accuracy(RightAnswers(local, test_embeddings, test_labels));
      r.validation_mix.local_only = CaseMix(c, validation.labels, classes)
                                        .Accuracy(RightAnswers(local, validation.embeddings, validation.labels));
    }
    report.mean_local_only_on_test += r.local_only_on_test / static_cast<double>(clinics.size());
    report.clinics.push_back(r);
  }
}

}  // namespace tinyfed::sim::internal
