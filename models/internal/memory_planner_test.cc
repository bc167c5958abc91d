#include "models/internal/memory_planner.h"

#include <random>

#include "gtest/gtest.h"

namespace tinyfed::models::internal {
namespace {

TEST(MemoryPlanner, ChainReusesMemory) {
  // a -> b -> c: a and c never live together, so they share.
  const MemoryPlan plan = PlanMemory({{1000, -1, 0}, {1000, 0, 1}, {1000, 1, 2}});
  EXPECT_EQ(plan.arena_bytes, 2 * 1024u);
  EXPECT_EQ(plan.offsets[0], plan.offsets[2]);
}

TEST(MemoryPlanner, RandomLifetimesNeverOverlapInMemory) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<BufferRequest> r;
    const int n = 1 + static_cast<int>(rng() % 30);
    uint64_t total = 0;
    for (int i = 0; i < n; ++i) {
      const int first = static_cast<int>(rng() % 20) - 1;
      r.push_back({rng() % 5000, first, first + static_cast<int>(rng() % 6)});
      total += (r.back().bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
    }
    const MemoryPlan plan = PlanMemory(r);
    EXPECT_LE(plan.arena_bytes, total);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(plan.offsets[i] % kArenaAlignment, 0u);
      EXPECT_LE(plan.offsets[i] + r[i].bytes, plan.arena_bytes);
      for (int j = i + 1; j < n; ++j) {
        const bool live_together = r[i].first_use <= r[j].last_use && r[j].first_use <= r[i].last_use;
        const bool disjoint =
            plan.offsets[i] + r[i].bytes <= plan.offsets[j] || plan.offsets[j] + r[j].bytes <= plan.offsets[i];
        if (live_together && r[i].bytes && r[j].bytes) {
          EXPECT_TRUE(disjoint) << trial << ": " << i << ", " << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tinyfed::models::internal
