#include "tinyfed/proto/plain_update.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace tinyfed::proto {
namespace {

std::vector<float> Values() { return {0.5f, -0.25f, 0.0f, 1.0f, -0.75f, 0.125f, 0.0625f, -1.0f}; }

std::function<double()> Uniform(uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
}

TEST(PlainUpdateTest, DenseRoundTripsExactly) {
  const auto values = Values();
  const EncodedUpdate e = EncodePlainUpdate(3, values, v1::COMPRESSION_NONE, 0.0, Uniform(1));
  EXPECT_EQ(e.update.round_id(), 3u);
  EXPECT_EQ(e.sent, values);
  auto decoded = DecodePlainUpdate(e.update, values.size());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, values);
}

TEST(PlainUpdateTest, TopKKeepsTheLargestAndDecodesToWhatWasSent) {
  const auto values = Values();
  const EncodedUpdate e = EncodePlainUpdate(1, values, v1::COMPRESSION_TOPK, 0.25, Uniform(1));
  ASSERT_EQ(e.update.sparse().indices_size(), 2);
  EXPECT_EQ(e.update.sparse().indices(0), 3u);  // 1.0
  EXPECT_EQ(e.update.sparse().indices(1), 7u);  // -1.0
  auto decoded = DecodePlainUpdate(e.update, values.size());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, e.sent);
}

TEST(PlainUpdateTest, Int8IsUnbiasedAndDecodesToWhatWasSent) {
  const auto values = Values();
  std::vector<double> mean(values.size(), 0.0);
  auto uniform = Uniform(7);
  const int trials = 4000;
  for (int t = 0; t < trials; ++t) {
    const EncodedUpdate e = EncodePlainUpdate(1, values, v1::COMPRESSION_INT8, 0.0, uniform);
    auto decoded = DecodePlainUpdate(e.update, values.size());
    ASSERT_TRUE(decoded.ok());
    ASSERT_EQ(*decoded, e.sent);
    for (size_t i = 0; i < values.size(); ++i) mean[i] += (*decoded)[i] / trials;
  }
  // One step is 1/127: the mean of 4000 roundings lies well within a tenth of it.
  for (size_t i = 0; i < values.size(); ++i) EXPECT_NEAR(mean[i], values[i], 0.1 / 127) << i;
}

TEST(PlainUpdateTest, BadUpdatesNameWhatIsWrong) {
  const auto values = Values();
  v1::PlainUpdate u = EncodePlainUpdate(1, values, v1::COMPRESSION_NONE, 0.0, Uniform(1)).update;
  auto expect = [&](const v1::PlainUpdate& bad, const std::string& fragment) {
    auto decoded = DecodePlainUpdate(bad, values.size());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find(fragment), std::string_view::npos) << decoded.status();
  };
  v1::PlainUpdate wrong_dimension = u;
  wrong_dimension.set_dimension(9);
  expect(wrong_dimension, "update.dimension 9");
  v1::PlainUpdate short_dense = u;
  short_dense.mutable_dense()->mutable_values()->pop_back();
  expect(short_dense, "update.dense needs 8");
  v1::PlainUpdate nan = u;
  const float q = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan.mutable_dense()->mutable_values()->data(), &q, sizeof(q));
  expect(nan, "not finite");
  v1::PlainUpdate sparse = EncodePlainUpdate(1, values, v1::COMPRESSION_TOPK, 0.25, Uniform(1)).update;
  sparse.mutable_sparse()->set_indices(1, 2);  // 3 then 2: not increasing
  expect(sparse, "indices must increase");
  v1::PlainUpdate int8 = EncodePlainUpdate(1, values, v1::COMPRESSION_INT8, 0.0, Uniform(1)).update;
  int8.mutable_int8()->set_scale(-1.0f);
  expect(int8, "finite scale");
  v1::PlainUpdate empty;
  empty.set_dimension(8);
  expect(empty, "carries no values");
}

}  // namespace
}  // namespace tinyfed::proto
