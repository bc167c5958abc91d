// The random rotation that flattens an update before quantization: the
// orthonormal DCT-II of the update after flipping the signs of its values by
// a diagonal D of random signs drawn from a seed the cohort shares,
// y = C D x, at the update's own length: no padding (a Hadamard transform
// needs a power of two, which for a head of 850 values sent 1,024).
// Orthonormal, so the L2 norm is kept; the inverse is x = D C^T y.
//
// Flattening: y_k is a sum of +-x_n C_kn with |C_kn| <= sqrt(2 / d), so it is
// subgaussian with variance proxy at most kRotationFlatness |x|^2 / d.
//
// Thread-safe: FFTW's planner, which is not, is serialized here.
#ifndef TINYFED_DP_ROTATION_H_
#define TINYFED_DP_ROTATION_H_

#include <span>

#include "tinyfed/dp/secure_random.h"

namespace tinyfed::dp {

inline constexpr double kRotationFlatness = 2.0;

// In place, on any length (an empty span is left as it is).
void RandomRotation(std::span<double> x, const Seed& seed);
void InverseRandomRotation(std::span<double> y, const Seed& seed);

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_ROTATION_H_
