// One round's local training: the stored samples outside the hold-out,
// embedded by the frozen backbone (through the embedding cache), train the
// head for the round's task (plain SGD, or DP-SGD at the patient level).
// It runs on its own interpreter over a copy of the installed model, so
// Predict is never blocked while it runs.
#ifndef TINYFED_CLIENT_INTERNAL_LOCAL_TRAINING_H_
#define TINYFED_CLIENT_INTERNAL_LOCAL_TRAINING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/internal/gateway_state.h"

namespace tinyfed::client::internal {

// The stored samples a model takes, embedded by its frozen backbone
// (through the embedding cache): those outside the hold-out to train on,
// those in it to score with. The embeddings are wiped with it.
struct EmbeddedSamples {
  std::vector<float> train, holdout;  // rows of embedding_size()
  std::vector<int> train_labels, holdout_labels;
  size_t stored = 0, foreign = 0;  // all stored, and those for another model
  EmbeddedSamples() = default;
  EmbeddedSamples(EmbeddedSamples&&) = default;
  EmbeddedSamples& operator=(EmbeddedSamples&&) = default;
  ~EmbeddedSamples();
};

// Embeds the stored samples with `interpreter` (built from `bundle`), saving
// new embeddings to the cache. Errors are the sample store's.
absl::StatusOr<EmbeddedSamples> EmbedStoredSamples(GatewayState& g, const v1::ModelBundle& bundle,
                                                   models::Interpreter& interpreter)
    ABSL_LOCKS_EXCLUDED(g.mu, g.store_mu);

// The round's head delta, or why there is none (`skipped`).
struct LocalUpdate {
  std::vector<float> delta;
  std::string skipped;
};

// Errors are the sample store's; the time spent goes to report->timings.
absl::StatusOr<LocalUpdate> TrainOnLocalSamples(GatewayState& g, const v1::RoundTask& task, RoundReport* report)
    ABSL_LOCKS_EXCLUDED(g.mu, g.store_mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_LOCAL_TRAINING_H_
