#include "tinyfed/dp/rotation.h"

#include <cmath>

namespace tinyfed::dp {
namespace {

void WalshHadamard(std::span<double> x) {
  const size_t n = x.size();
  for (size_t half = 1; half < n; half *= 2) {
    for (size_t i = 0; i < n; i += 2 * half) {
      for (size_t j = i; j < i + half; ++j) {
        const double a = x[j], b = x[j + half];
        x[j] = a + b;
        x[j + half] = a - b;
      }
    }
  }
  const double norm = 1.0 / std::sqrt(static_cast<double>(n));
  for (double& v : x) v *= norm;
}

void ApplySigns(std::span<double> x, const Seed& seed) {
  auto rng = SecureRandom::FromSeed(seed);
  uint64_t bits = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (i % 64 == 0) bits = rng->Next64();
    if ((bits >> (i % 64)) & 1) x[i] = -x[i];
  }
}

}  // namespace

size_t PaddedDimension(size_t dimension) {
  size_t m = 1;
  while (m < dimension) m *= 2;
  return m;
}

void RandomizedHadamard(std::span<double> x, const Seed& seed) {
  ApplySigns(x, seed);
  WalshHadamard(x);
}

void InverseRandomizedHadamard(std::span<double> y, const Seed& seed) {
  WalshHadamard(y);  // H / sqrt(m) is its own inverse
  ApplySigns(y, seed);
}

}  // namespace tinyfed::dp
