// Knowledge distillation (Hinton et al. 2015): a small student backbone
// learns from a larger teacher's softened outputs as well as the labels,
// then spends a short fine-tune on the training cases it still gets wrong.
// Before quantization, like pruning (prune.h).
//
//   auto student = BuildBackbone(Architecture::kMlp, train, seed, {.mlp_hidden = {32, 16}});
//   auto report = Distill(teacher, &*student, train, DistillOptions{});
#ifndef TINYFED_MODELS_DISTILL_H_
#define TINYFED_MODELS_DISTILL_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

struct DistillOptions {
  // Softmax temperature of both teacher and student in the soft term.
  float temperature = 4.0f;
  // Weight of the soft term, T^2 x cross-entropy against the teacher's
  // softened distribution; 1 - soft_weight goes to the hard labels.
  float soft_weight = 0.7f;
  TrainOptions train;  // of the student on the soft and hard targets
  // Then epochs over the cases the student gets wrong, each batch of them
  // beside as many it gets right (so that it does not forget those), at a
  // constant learning rate, on the same loss. 0 skips it.
  int hard_case_epochs = 1;
  float hard_case_learning_rate = 0.002f;
};

struct DistillReport {
  double teacher_accuracy = 0.0;        // on the training data, float
  double student_accuracy = 0.0;        // on it after distillation, float
  size_t hard_cases = 0;                // training cases the student got wrong
  double final_student_accuracy = 0.0;  // after the hard-case fine-tune
};

// Trains `student` (a float bundle with the teacher's classes) from
// `teacher` (float32) on `train`. INVALID_ARGUMENT if either is not
// float32, the data or classes do not fit, or an option is out of range;
// the student is then unchanged.
absl::StatusOr<DistillReport> Distill(const v1::ModelBundle& teacher, v1::ModelBundle* student, const Dataset& train,
                                      const DistillOptions& options);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_DISTILL_H_
