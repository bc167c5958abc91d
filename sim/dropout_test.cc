#include "tinyfed/sim/dropout.h"

#include <gtest/gtest.h>

#include <string>

namespace tinyfed::sim {
namespace {

TEST(DropPhase, IsAPureFunctionOfSeedDeviceAndRound) {
  const std::array<double, 4> p = {0.3, 0.3, 0.3, 0.3};
  for (uint64_t round = 1; round < 50; ++round) {
    EXPECT_EQ(DropPhase(7, "clinic-1", round, p), DropPhase(7, "clinic-1", round, p));
  }
  int differ = 0;
  for (uint64_t round = 1; round < 200; ++round)
    differ += DropPhase(7, "clinic-1", round, p) != DropPhase(8, "clinic-1", round, p);
  EXPECT_GT(differ, 20);  // another seed, other decisions
}

TEST(DropPhase, NeverAndAlwaysAndEachPhaseGivenTheLast) {
  EXPECT_EQ(DropPhase(1, "a", 1, {0, 0, 0, 0}), -1);
  EXPECT_EQ(DropPhase(1, "a", 1, {1, 0, 0, 0}), 0);
  EXPECT_EQ(DropPhase(1, "a", 1, {0, 1, 1, 1}), 1);
  EXPECT_EQ(DropPhase(1, "a", 1, {0, 0, 0, 1}), 3);
}

// Phase i's rate is its probability times the chance of reaching it.
TEST(DropPhase, RatesMatchTheConditionalProbabilities) {
  const std::array<double, 4> p = {0.1, 0.2, 0.0, 0.5};
  std::array<int, 4> dropped{};
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    const int at = DropPhase(3, "clinic-" + std::to_string(i), 5, p);
    if (at >= 0) ++dropped[static_cast<size_t>(at)];
  }
  const double expected[] = {0.1, 0.9 * 0.2, 0.0, 0.9 * 0.8 * 0.5};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(dropped[i] / static_cast<double>(n), expected[i], 0.01) << i;
}

}  // namespace
}  // namespace tinyfed::sim
