#include "tinyfed/sim/partition.h"

#include <gtest/gtest.h>

#include <set>

#include "base/testing/value_or_die.h"

namespace tinyfed::sim {
namespace {

std::vector<int> Labels(size_t n, int classes) {
  std::vector<int> labels(n);
  for (size_t i = 0; i < n; ++i) labels[i] = static_cast<int>(i % static_cast<size_t>(classes));
  return labels;
}

void ExpectExactCover(const Partition& p, size_t n) {
  std::set<size_t> seen;
  size_t total = 0;
  for (const auto& part : p) {
    total += part.size();
    seen.insert(part.begin(), part.end());
  }
  EXPECT_EQ(total, n);
  EXPECT_EQ(seen.size(), n);
  EXPECT_EQ(*seen.rbegin(), n - 1);
}

TEST(PartitionTest, IidSharesAreEqualAndCoverEverything) {
  auto p = IidPartition(1003, 10, 7);
  ASSERT_TRUE(p.ok());
  ExpectExactCover(*p, 1003);
  for (const auto& part : *p) EXPECT_NEAR(static_cast<double>(part.size()), 100.3, 1.0);
}

TEST(PartitionTest, DirichletCoversEverythingAndRespectsMinimum) {
  const auto labels = Labels(5000, 10);
  auto p = DirichletLabelPartition(labels, 20, 0.5, 3, 20);
  ASSERT_TRUE(p.ok()) << p.status();
  ExpectExactCover(*p, labels.size());
  for (const auto& part : *p) EXPECT_GE(part.size(), 20u);
}

// Small alpha concentrates each client on few classes; large alpha is near IID.
TEST(PartitionTest, SkewFallsAsAlphaGrows) {
  const auto labels = Labels(10000, 10);
  auto dominant_share = [&](double alpha) {
    const auto p = base::testing::ValueOrDie(DirichletLabelPartition(labels, 10, alpha, 11), "the partition");
    double sum = 0.0;
    for (const auto& part : p) {
      std::vector<int> counts(10, 0);
      for (size_t i : part) ++counts[static_cast<size_t>(labels[i])];
      sum += *std::max_element(counts.begin(), counts.end()) / static_cast<double>(part.size());
    }
    return sum / 10.0;
  };
  const double skewed = dominant_share(0.1), mild = dominant_share(100.0);
  EXPECT_GT(skewed, 0.5);
  EXPECT_LT(mild, 0.2);
}

TEST(PartitionTest, SameSeedSameSplit) {
  const auto labels = Labels(2000, 5);
  EXPECT_EQ(*DirichletLabelPartition(labels, 8, 0.5, 42), *DirichletLabelPartition(labels, 8, 0.5, 42));
  EXPECT_NE(*DirichletLabelPartition(labels, 8, 0.5, 42), *DirichletLabelPartition(labels, 8, 0.5, 43));
}

TEST(PartitionTest, RefusesImpossibleRequests) {
  const auto labels = Labels(100, 2);
  EXPECT_FALSE(DirichletLabelPartition(labels, 4, 0.0, 1).ok());
  EXPECT_FALSE(DirichletLabelPartition(labels, 20, 0.5, 1, 10).ok());
  EXPECT_FALSE(IidPartition(3, 4, 1).ok());
}

}  // namespace
}  // namespace tinyfed::sim
