// Getting a model onto the gateway: a resumable chunked download (each chunk
// on disk before the next is asked for, so a power cut costs one chunk),
// verified against its announced hash and the trust store, checked to be a
// model for the same task, then installed. And at start, the installed
// model read back and verified again.
#ifndef TINYFED_CLIENT_INTERNAL_MODEL_DOWNLOAD_H_
#define TINYFED_CLIENT_INTERNAL_MODEL_DOWNLOAD_H_

#include <vector>

#include "absl/status/status.h"
#include "client/internal/gateway_state.h"

namespace tinyfed::client::internal {

// Downloads (resuming a partial download of the same model), verifies and
// installs `ref`; adds the time spent in calls to t->transport. On refusal
// the installed model stays, and why is kept for telemetry; a link failure
// (LinkLost) leaves the partial download to resume.
absl::Status UpdateModel(GatewayState& g, const v1::ModelRef& ref, RoundTimings* t)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g.round_mu) ABSL_LOCKS_EXCLUDED(g.mu);

// Verifies and installs data_dir/model.signed under the newest root of
// `history` that signed it (an older one: it serves, and says so, until the
// next model). A damaged one is set aside to be fetched again.
absl::Status LoadInstalledModel(GatewayState& g, const std::vector<models::TrustedRoot>& history)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g.mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_MODEL_DOWNLOAD_H_
