#include "tinyfed/dp/rotation.h"

#include <fftw3.h>

#include <cmath>

#include "dp/internal/fftw_planner.h"

namespace tinyfed::dp {
namespace {

void FlipSigns(std::span<double> x, const Seed& seed) {
  auto rng = SecureRandom::FromSeed(seed);
  uint64_t bits = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (i % 64 == 0) bits = rng->Next64();
    if ((bits >> (i % 64)) & 1) x[i] = -x[i];
  }
}

// FFTW's unnormalized DCT in place: REDFT10 (DCT-II) or REDFT01 (DCT-III).
void Transform(std::span<double> x, fftw_r2r_kind kind) {
  const int n = static_cast<int>(x.size());
  fftw_plan plan;
  {
    absl::MutexLock lock(&internal::FftwPlannerMutex());
    plan = fftw_plan_r2r_1d(n, x.data(), x.data(), kind, FFTW_ESTIMATE);
  }
  fftw_execute(plan);
  absl::MutexLock lock(&internal::FftwPlannerMutex());
  fftw_destroy_plan(plan);
}

}  // namespace

// REDFT10 computes Y_k = 2 sum_n x_n cos(pi k (2n + 1) / 2d); the orthonormal
// DCT-II is Y_0 / (2 sqrt(d)) and Y_k / sqrt(2d) for k > 0. REDFT01 computes
// X_n = Y_0 + 2 sum_{k>0} Y_k cos(...); fed Y_0 = y_0 / sqrt(d) and
// Y_k = y_k / sqrt(2d) it is the orthonormal DCT-III, the inverse.
void RandomRotation(std::span<double> x, const Seed& seed) {
  if (x.empty()) return;
  const double d = static_cast<double>(x.size());
  FlipSigns(x, seed);
  Transform(x, FFTW_REDFT10);
  const double rest = 1.0 / std::sqrt(2.0 * d);
  x[0] *= 0.5 / std::sqrt(d);
  for (size_t k = 1; k < x.size(); ++k) x[k] *= rest;
}

void InverseRandomRotation(std::span<double> y, const Seed& seed) {
  if (y.empty()) return;
  const double d = static_cast<double>(y.size());
  const double rest = 1.0 / std::sqrt(2.0 * d);
  y[0] *= 1.0 / std::sqrt(d);
  for (size_t k = 1; k < y.size(); ++k) y[k] *= rest;
  Transform(y, FFTW_REDFT01);
  FlipSigns(y, seed);
}

}  // namespace tinyfed::dp
