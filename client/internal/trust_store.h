// The gateway's trust in the federation's roots: the root it was installed
// with (config.trusted_root), advanced by every rotation it has accepted
// since (data_dir/roots/N.root, each re-verified at start: the disk is not
// trusted either).
#ifndef TINYFED_CLIENT_INTERNAL_TRUST_STORE_H_
#define TINYFED_CLIENT_INTERNAL_TRUST_STORE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "client/internal/gateway_state.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::client::internal {

// Every root trusted so far, oldest first (the last is the current one).
// DATA_LOSS names a stored root that fails verification.
absl::StatusOr<std::vector<models::TrustedRoot>> LoadTrustChain(const ClientConfig& config, base::Env& env);

// Roots newer than the trusted one, each checked and kept on disk before
// the next: a rotation reaches gateways at their next check-in. A refused
// root stops there and is reported in telemetry.
void AdvanceRoots(GatewayState& g, const google::protobuf::RepeatedPtrField<v1::SignedMetadata>& roots)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g.round_mu);

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_TRUST_STORE_H_
