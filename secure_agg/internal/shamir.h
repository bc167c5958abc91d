// Shamir t-of-k sharing of 32-byte secrets over GF(2^61 - 1): the secret is
// eight 32-bit words, each the constant term of its own random polynomial of
// degree t - 1; the share for x is the eight evaluations at x (x != 0).
#ifndef TINYFED_SECURE_AGG_INTERNAL_SHAMIR_H_
#define TINYFED_SECURE_AGG_INTERNAL_SHAMIR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "secure_agg/internal/crypto.h"

namespace tinyfed::secagg::internal {

inline constexpr uint64_t kFieldPrime = (uint64_t{1} << 61) - 1;
inline constexpr size_t kShareBytes = 8 * 8;

// One share per x in `points` (distinct, nonzero, < kFieldPrime), each
// kShareBytes. Polynomial coefficients come from `rng` and are wiped.
std::vector<std::string> SplitSecret(const SecretKey& secret, int threshold, const std::vector<uint64_t>& points,
                                     Random& rng);

// Interpolates at 0 from at least `threshold` shares (points distinct).
// INVALID_ARGUMENT for too few shares, a malformed share, or a result that is
// not a 32-bit word in some position (shares from different secrets).
absl::StatusOr<SecretKey> CombineShares(const std::vector<uint64_t>& points, const std::vector<std::string>& shares,
                                        int threshold);

}  // namespace tinyfed::secagg::internal

#endif  // TINYFED_SECURE_AGG_INTERNAL_SHAMIR_H_
