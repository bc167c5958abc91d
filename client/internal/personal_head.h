// The clinic's personal head: after each installed model, two candidates
// fitted from the global head on the clinic's own samples (the global head
// recalibrated: its logits rescaled and its class biases refitted; the
// whole head fine-tuned), each scored by 5-fold cross-validation against
// the head it would replace. The simplest head no other beats beyond
// chance serves (an exact one-sided McNemar test), so a handful of samples
// keeps the federation's head. The head chosen is fitted again on every
// sample and answers every case. It never leaves the gateway.
#ifndef TINYFED_CLIENT_INTERNAL_PERSONAL_HEAD_H_
#define TINYFED_CLIENT_INTERNAL_PERSONAL_HEAD_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "client/internal/gateway_state.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::client::internal {

// How likely a head no better than the one it replaces may have won as
// often: chosen on validation data (clinics-fmnist at seeds 12 and 13,
// docs/gateway.md).
inline constexpr double kWinLevel = 0.25;

// `head` with its class biases refitted to `embeddings` and `labels` (rows
// of head->in_features() finite values, labels in range; anything else
// leaves it unchanged), its weights kept: how a clinic whose cases come in
// other proportions than the federation's corrects the global head.
void RefitClassBiases(v1::Head* head, std::span<const float> embeddings, std::span<const int> labels);

// The global head recalibrated to the clinic: its weights and biases
// scaled by the factor from a fixed grid under which, with its class
// biases refitted, the clinic's samples are most likely. The scale corrects
// a head over- or under-confident on the clinic's cases, the biases its
// proportions. Samples that do not fit the head (as for RefitClassBiases)
// leave it unchanged.
v1::Head RecalibrateHead(const v1::Head& global, std::span<const float> embeddings, std::span<const int> labels);

// Whether a candidate head's `wins` against `losses` on paired
// cross-validated samples pass the one-sided McNemar test
// (models::McNemarPValue) at `level`.
bool WinsBeyondChance(uint32_t wins, uint32_t losses, double level);

// Fits the personal head for the installed model (config.personal_head_epochs
// > 0) and installs it beside the model, unless another model was installed
// meanwhile. Errors are the sample store's; without a model or samples the
// gateway keeps the global head.
absl::Status RefreshPersonalHead(GatewayState& g) ABSL_LOCKS_EXCLUDED(g.mu, g.store_mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_PERSONAL_HEAD_H_
