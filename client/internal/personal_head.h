// The clinic's personal head: after each installed model, the global head
// fine-tuned on the clinic's own samples outside the held-out slice, and
// both heads scored on that slice. It is served only when it wins more
// held-out samples than it loses by more than chance would: an exact
// one-sided McNemar test at p <= 0.35, which a handful of held-out samples
// cannot pass. Once chosen, the head that serves is
// fitted again on every sample, the held-out ones included (the test chose
// the method, and more samples make it better). It never leaves the gateway.
#ifndef TINYFED_CLIENT_INTERNAL_PERSONAL_HEAD_H_
#define TINYFED_CLIENT_INTERNAL_PERSONAL_HEAD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "client/internal/gateway_state.h"

namespace tinyfed::client::internal {

// Whether the personal head's `wins` against `losses` on paired held-out
// samples pass the one-sided McNemar test (models::McNemarPValue) at the
// gateway's level (0.35).
bool PersonalHeadWins(uint32_t wins, uint32_t losses);

// Fits the personal head for the installed model (config.personal_head_epochs
// > 0) and installs it beside the model, unless another model was installed
// meanwhile. Errors are the sample store's; without a model, samples or a
// held-out slice the gateway keeps the global head.
absl::Status RefreshPersonalHead(GatewayState& g) ABSL_LOCKS_EXCLUDED(g.mu, g.store_mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_PERSONAL_HEAD_H_
