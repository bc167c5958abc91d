// The randomized Hadamard transform that flattens an update before
// quantization: y = H D x / sqrt(m), with D a diagonal of random signs drawn
// from a seed the cohort shares, H the Walsh-Hadamard matrix and m the length
// padded to a power of two. Orthonormal, so the L2 norm is kept and the
// inverse is x = D H y / sqrt(m).
#ifndef TINYFED_DP_ROTATION_H_
#define TINYFED_DP_ROTATION_H_

#include <cstddef>
#include <span>
#include <vector>

#include "tinyfed/dp/secure_random.h"

namespace tinyfed::dp {

size_t PaddedDimension(size_t dimension);  // the next power of two, at least 1

// In place on a vector whose length is a power of two.
void RandomizedHadamard(std::span<double> x, const Seed& seed);
void InverseRandomizedHadamard(std::span<double> y, const Seed& seed);

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_ROTATION_H_
