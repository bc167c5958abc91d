#include "tinyfed/dp/count_sketch.h"

#include <sodium.h>

#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tinyfed::dp {

absl::StatusOr<CountSketch> CountSketch::Create(size_t dimension, size_t buckets, const Seed& seed) {
  if (buckets < 1 || buckets > dimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("a count sketch needs 1 to ", dimension, " buckets for ", dimension, " values, got ", buckets));
  }
  // Its own stream: the rotation draws its signs from the seed itself.
  Seed own;
  static constexpr char kPurpose[] = "tinyfed count sketch v1";
  crypto_generichash(own.data(), own.size(), seed.data(), seed.size(), reinterpret_cast<const uint8_t*>(kPurpose),
                     sizeof(kPurpose) - 1);
  auto rng = SecureRandom::FromSeed(own);
  std::vector<uint32_t> position(dimension);
  std::iota(position.begin(), position.end(), 0u);
  for (size_t i = dimension; i > 1; --i) std::swap(position[i - 1], position[rng->Uniform(i)]);  // Fisher-Yates
  std::vector<uint32_t> bucket(dimension);
  std::vector<int8_t> sign(dimension);
  uint64_t bits = 0;
  for (size_t i = 0; i < dimension; ++i) {
    bucket[i] = static_cast<uint32_t>(position[i] % buckets);
    if (i % 64 == 0) bits = rng->Next64();
    sign[i] = (bits >> (i % 64)) & 1 ? int8_t{-1} : int8_t{1};
  }
  return CountSketch(std::move(bucket), std::move(sign), buckets);
}

std::vector<double> CountSketch::Sketch(std::span<const double> x) const {
  std::vector<double> y(buckets_, 0.0);
  for (size_t i = 0; i < bucket_.size() && i < x.size(); ++i) y[bucket_[i]] += sign_[i] * x[i];
  return y;
}

std::vector<double> CountSketch::Unsketch(std::span<const double> y) const {
  std::vector<double> x(bucket_.size(), 0.0);
  for (size_t i = 0; i < bucket_.size(); ++i) {
    if (bucket_[i] < y.size()) x[i] = sign_[i] * y[bucket_[i]];
  }
  return x;
}

}  // namespace tinyfed::dp
