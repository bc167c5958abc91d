// What a gateway reports about itself after a round: the installed model
// and why an offered one was refused, its privacy ledger, and aggregates of
// its data (class counts, accuracy and a confidence histogram on the
// hold-out). Counts and rates only: never a sample.
#ifndef TINYFED_CLIENT_INTERNAL_TELEMETRY_H_
#define TINYFED_CLIENT_INTERNAL_TELEMETRY_H_

#include "absl/status/statusor.h"
#include "client/internal/gateway_state.h"

namespace tinyfed::client::internal {

// Errors are the sample store's.
absl::StatusOr<v1::Telemetry> CollectTelemetry(GatewayState& g) ABSL_LOCKS_EXCLUDED(g.mu, g.store_mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_TELEMETRY_H_
