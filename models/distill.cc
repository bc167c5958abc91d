#include "tinyfed/models/distill.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "models/internal/float_network.h"

namespace tinyfed::models {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

// Logits of every sample, rows of num_classes().
std::vector<float> AllLogits(internal::FloatNetwork* net, const Dataset& data) {
  constexpr size_t kBatch = 256;
  std::vector<float> logits;
  logits.reserve(data.size() * static_cast<size_t>(net->num_classes()));
  const size_t d = data.feature_size();
  for (size_t first = 0; first < data.size(); first += kBatch) {
    const size_t n = std::min(kBatch, data.size() - first);
    net->Forward(std::span(data.features).subspan(first * d, n * d), static_cast<int>(n));
    logits.insert(logits.end(), net->logits().begin(), net->logits().end());
  }
  return logits;
}

int Argmax(std::span<const float> row) {
  return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
}

// Softmax of row / temperature into out.
void Softmax(std::span<const float> row, float temperature, std::span<float> out) {
  const float m = *std::max_element(row.begin(), row.end());
  float total = 0.0f;
  for (size_t c = 0; c < row.size(); ++c) total += out[c] = std::exp((row[c] - m) / temperature);
  for (float& p : out) p /= total;
}

// The distillation loss of a batch against the teacher's logits.
class DistillationLoss {
 public:
  DistillationLoss(const std::vector<float>& teacher_logits, const std::vector<int>& labels, int classes,
                   const DistillOptions& options)
      : teacher_(teacher_logits), labels_(labels), k_(static_cast<size_t>(classes)), options_(options) {}

  // `rows` index the training data through `index` (identity when empty).
  float operator()(std::span<const size_t> rows, std::span<const float> logits, std::span<float> grad,
                   const std::vector<size_t>& index) const {
    const float t = options_.temperature, a = options_.soft_weight;
    const auto n = static_cast<float>(rows.size());
    std::vector<float> pt(k_), qs(k_), ps(k_);
    double loss = 0.0;
    for (size_t b = 0; b < rows.size(); ++b) {
      const size_t row = index.empty() ? rows[b] : index[rows[b]];
      const auto s = logits.subspan(b * k_, k_);
      Softmax(std::span(teacher_).subspan(row * k_, k_), t, pt);
      Softmax(s, t, qs);
      Softmax(s, 1.0f, ps);
      const auto y = static_cast<size_t>(labels_[row]);
      for (size_t c = 0; c < k_; ++c) {
        loss -= a * t * t * pt[c] * std::log(std::max(qs[c], 1e-30f));
        grad[b * k_ + c] = (a * t * (qs[c] - pt[c]) + (1.0f - a) * (ps[c] - (c == y ? 1.0f : 0.0f))) / n;
      }
      loss -= (1.0f - a) * std::log(std::max(ps[y], 1e-30f));
    }
    return static_cast<float>(loss / n);
  }

 private:
  const std::vector<float>& teacher_;
  const std::vector<int>& labels_;
  size_t k_;
  const DistillOptions& options_;
};

double Accuracy(const std::vector<float>& logits, const Dataset& data) {
  size_t right = 0;
  const auto k = static_cast<size_t>(data.num_classes());
  for (size_t i = 0; i < data.size(); ++i) right += Argmax(std::span(logits).subspan(i * k, k)) == data.labels[i];
  return static_cast<double>(right) / static_cast<double>(data.size());
}

}  // namespace

absl::StatusOr<DistillReport> Distill(const v1::ModelBundle& teacher, v1::ModelBundle* student, const Dataset& train,
                                      const DistillOptions& options) {
  if (!(options.temperature >= 1.0f && options.temperature <= 100.0f) ||
      !(options.soft_weight >= 0.0f && options.soft_weight <= 1.0f) || options.hard_case_epochs < 0 ||
      !(options.hard_case_learning_rate > 0.0f)) {
    return InvalidArgumentError(StrCat("distillation options out of range: temperature ", options.temperature,
                                       " (1 to 100), soft weight ", options.soft_weight, " (0 to 1), hard-case epochs ",
                                       options.hard_case_epochs, ", hard-case learning rate ",
                                       options.hard_case_learning_rate));
  }
  auto teacher_net = internal::FloatNetwork::Create(teacher);
  if (!teacher_net.ok()) return teacher_net.status();
  auto student_net = internal::FloatNetwork::Create(*student);
  if (!student_net.ok()) return student_net.status();
  if (auto s = internal::CheckDataFits(*teacher_net, train); !s.ok()) {
    return InvalidArgumentError(StrCat("the teacher: ", s.message()));
  }
  if (auto s = internal::CheckDataFits(*student_net, train); !s.ok()) {
    return InvalidArgumentError(StrCat("the student: ", s.message()));
  }
  DistillReport report;
  const std::vector<float> teacher_logits = AllLogits(&*teacher_net, train);
  report.teacher_accuracy = Accuracy(teacher_logits, train);
  const DistillationLoss loss(teacher_logits, train.labels, train.num_classes(), options);
  const std::vector<size_t> identity;
  if (auto s =
          internal::TrainNetwork(&*student_net, train, options.train,
                                 [&](auto rows, auto logits, auto grad) { return loss(rows, logits, grad, identity); });
      !s.ok()) {
    return s;
  }
  const std::vector<float> student_logits = AllLogits(&*student_net, train);
  report.student_accuracy = Accuracy(student_logits, train);
  report.final_student_accuracy = report.student_accuracy;

  // The cases it gets wrong, each beside one it gets right.
  const auto k = static_cast<size_t>(train.num_classes());
  std::vector<size_t> wrong, right;
  for (size_t i = 0; i < train.size(); ++i) {
    (Argmax(std::span(student_logits).subspan(i * k, k)) == train.labels[i] ? right : wrong).push_back(i);
  }
  report.hard_cases = wrong.size();
  if (options.hard_case_epochs > 0 && !wrong.empty()) {
    std::mt19937_64 rng(options.train.seed);
    std::shuffle(right.begin(), right.end(), rng);
    std::vector<size_t> index = wrong;
    index.insert(index.end(), right.begin(),
                 right.begin() + static_cast<std::ptrdiff_t>(std::min(right.size(), wrong.size())));
    const Dataset hard = train.Subset(index);
    TrainOptions fine = options.train;
    fine.epochs = options.hard_case_epochs;
    fine.learning_rate = options.hard_case_learning_rate;
    fine.cosine_decay = false;
    fine.on_epoch = nullptr;
    if (auto s =
            internal::TrainNetwork(&*student_net, hard, fine,
                                   [&](auto rows, auto logits, auto grad) { return loss(rows, logits, grad, index); });
        !s.ok()) {
      return s;
    }
    report.final_student_accuracy = Accuracy(AllLogits(&*student_net, train), train);
  }
  student_net->WriteTo(student);
  student->mutable_metadata()->set_training_seed(options.train.seed);
  return report;
}

}  // namespace tinyfed::models
