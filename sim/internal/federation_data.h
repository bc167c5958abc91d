// The data side of a simulation: the scenario's dataset split into test,
// validation, a public archive (the backbone's) and the clinics' pool; the
// backbone; each clinic's train and hold-out slices, partitioned and shifted
// by its own sensor; and embeddings by the frozen backbone.
#ifndef TINYFED_SIM_INTERNAL_FEDERATION_DATA_H_
#define TINYFED_SIM_INTERNAL_FEDERATION_DATA_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/sim/scenario.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::sim::internal {

struct Clinic {
  std::string id;
  models::Dataset train, holdout;
  // The held-out cases as a new scanner shows them (faults.input_shift_round),
  // for a shifted clinic; else empty.
  models::Dataset shifted_holdout;
  std::vector<float> train_embeddings, holdout_embeddings;
};

struct Splits {
  models::Dataset test, validation, public_data, pool;
};

struct EvaluationSet {
  std::vector<float> embeddings;
  std::vector<int> labels;
};

// Stratified splits by the scenario's fractions and seed.
absl::StatusOr<Splits> LoadData(const Scenario& s);
// The backbone before pretraining (or the given one): its shape.
absl::StatusOr<v1::ModelBundle> BackboneShape(const Scenario& s, const models::Dataset& public_data);
// The given backbone, or one pretrained on the public data and quantized;
// `description` says which.
absl::StatusOr<v1::ModelBundle> MakeBackbone(const Scenario& s, const models::Dataset& public_data,
                                             std::string* description);
// The pool partitioned into the scenario's clinics (clinic-0000, ...).
absl::StatusOr<std::vector<Clinic>> MakeClinics(const Scenario& s, const models::Dataset& pool);
// Each sample's embedding, concatenated.
std::vector<float> Embed(models::Interpreter& interpreter, const models::Dataset& d);

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_FEDERATION_DATA_H_
