// Shamir t-of-k sharing of 128-bit seeds over GF(2^64 - 59): the seed is two
// field elements, each the constant term of its own random polynomial of
// degree t - 1; the share for x is the two evaluations at x (x != 0), 16
// bytes, the size of the secret.
#ifndef TINYFED_SECURE_AGG_INTERNAL_SHAMIR_H_
#define TINYFED_SECURE_AGG_INTERNAL_SHAMIR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "secure_agg/internal/crypto.h"

namespace tinyfed::secagg::internal {

inline constexpr size_t kShareBytes = kSeedBytes;

// One share per x in `points` (distinct, nonzero, < kFieldPrime), each
// kShareBytes. Polynomial coefficients come from `rng` and are wiped.
std::vector<std::string> SplitSecret(const SecretSeed& secret, int threshold, const std::vector<uint64_t>& points,
                                     Random& rng);

// Interpolates at 0 from the first `threshold` shares (points distinct).
// INVALID_ARGUMENT for too few shares or a malformed share.
absl::StatusOr<SecretSeed> CombineShares(const std::vector<uint64_t>& points, const std::vector<std::string>& shares,
                                         int threshold);

}  // namespace tinyfed::secagg::internal

#endif  // TINYFED_SECURE_AGG_INTERNAL_SHAMIR_H_
