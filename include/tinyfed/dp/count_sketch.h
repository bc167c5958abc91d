// Linear compression under secure aggregation (Chen, Choquette-Choo, Kairouz
// and Suresh 2022, "The Fundamental Price of Secure Aggregation in
// Differentially Private Federated Learning"): a count sketch of d values in
// m buckets. Value i goes, times a random sign, to bucket pi(i) mod m for a
// random permutation pi, so every bucket holds floor(d / m) or ceil(d / m)
// values. Built from a seed the cohort shares, the sketch is the same linear
// map on every client, so the sketches' sum is the sketch of the updates'
// sum, and the server decodes that sum with the transpose: each value comes
// back plus zero-mean cross-talk from the values sharing its bucket.
//
// Norms: |Sketch(x)| <= sqrt(max_load()) |x|, and the same for Unsketch.
#ifndef TINYFED_DP_COUNT_SKETCH_H_
#define TINYFED_DP_COUNT_SKETCH_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/dp/secure_random.h"

namespace tinyfed::dp {

class CountSketch {
 public:
  // INVALID_ARGUMENT unless 1 <= buckets <= dimension.
  static absl::StatusOr<CountSketch> Create(size_t dimension, size_t buckets, const Seed& seed);

  size_t dimension() const { return bucket_.size(); }
  size_t buckets() const { return buckets_; }
  size_t max_load() const { return (bucket_.size() + buckets_ - 1) / buckets_; }

  // x must have dimension() values (past them nothing is read, short of them
  // zeros are); the result has buckets() values.
  std::vector<double> Sketch(std::span<const double> x) const;
  // y must have buckets() values, as above; the result has dimension() values.
  std::vector<double> Unsketch(std::span<const double> y) const;

 private:
  CountSketch(std::vector<uint32_t> bucket, std::vector<int8_t> sign, size_t buckets)
      : bucket_(std::move(bucket)), sign_(std::move(sign)), buckets_(buckets) {}
  std::vector<uint32_t> bucket_;
  std::vector<int8_t> sign_;
  size_t buckets_;
};

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_COUNT_SKETCH_H_
