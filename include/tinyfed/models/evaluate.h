// Accuracy, per-class sensitivity and specificity, and the confusion matrix
// of a float or int8 bundle on a labelled dataset.
#ifndef TINYFED_MODELS_EVALUATE_H_
#define TINYFED_MODELS_EVALUATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int num_classes);
  void Add(int truth, int predicted);
  int num_classes() const { return num_classes_; }
  uint64_t count(int truth, int predicted) const;
  uint64_t total() const { return total_; }
  double accuracy() const;
  // Of the samples of class c, the share predicted c (recall). NaN if none.
  double sensitivity(int c) const;
  // Of the samples not of class c, the share not predicted c. NaN if none.
  double specificity(int c) const;

 private:
  int num_classes_;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

// Runs every sample through the bundle: the int8 interpreter (batch 1, as a
// gateway would) for int8 bundles, the float network for float bundles.
// INVALID_ARGUMENT if the data's shape or classes do not match the bundle.
absl::StatusOr<ConfusionMatrix> Evaluate(const v1::ModelBundle& bundle, const Dataset& data,
                                         KernelSet kernels = KernelSet::kBest);
// The same with an interpreter the caller already prepared.
absl::StatusOr<ConfusionMatrix> Evaluate(Interpreter& interpreter, const Dataset& data);

// The exact one-sided McNemar p-value of `wins` against `losses` on paired
// samples (two models scored on the same ones): how likely a model no
// better than the other wins that often among the samples they disagree
// on, P(X >= wins) for X ~ Binomial(wins + losses, 1/2).
double McNemarPValue(uint32_t wins, uint32_t losses);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_EVALUATE_H_
