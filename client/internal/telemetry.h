// What a gateway reports about itself after a round: the installed model
// and why an offered one was refused, its privacy ledger, and aggregates of
// its data (class counts, accuracy and a confidence histogram on the
// hold-out), and of the cases it answered since its last report. Counts
// and rates only: never a sample.
#ifndef TINYFED_CLIENT_INTERNAL_TELEMETRY_H_
#define TINYFED_CLIENT_INTERNAL_TELEMETRY_H_

#include "absl/status/statusor.h"
#include "client/internal/gateway_state.h"

namespace tinyfed::client::internal {

// Errors are the sample store's.
absl::StatusOr<v1::Telemetry> CollectTelemetry(GatewayState& g) ABSL_LOCKS_EXCLUDED(g.mu, g.store_mu);
// `sent` reached the aggregator: its recent cases are not counted again
// (those predicted meanwhile are).
void ForgetReportedCases(GatewayState& g, const v1::Telemetry& sent) ABSL_LOCKS_EXCLUDED(g.mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_TELEMETRY_H_
