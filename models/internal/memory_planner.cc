#include "models/internal/memory_planner.h"

#include <algorithm>
#include <numeric>

namespace tinyfed::models::internal {
namespace {

uint64_t AlignUp(uint64_t x) { return (x + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

bool Overlap(const BufferRequest& a, const BufferRequest& b) {
  return a.first_use <= b.last_use && b.first_use <= a.last_use;
}

}  // namespace

MemoryPlan PlanMemory(const std::vector<BufferRequest>& requests) {
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return requests[a].bytes > requests[b].bytes; });
  std::vector<size_t> placed;
  placed.reserve(requests.size());
  for (size_t r : order) {
    const uint64_t size = AlignUp(requests[r].bytes);
    if (size == 0) continue;
    // Conflicting intervals sorted by offset; take the first gap that fits.
    std::vector<std::pair<uint64_t, uint64_t>> busy;
    for (size_t p : placed) {
      if (Overlap(requests[r], requests[p])) {
        busy.emplace_back(plan.offsets[p], plan.offsets[p] + AlignUp(requests[p].bytes));
      }
    }
    std::sort(busy.begin(), busy.end());
    uint64_t offset = 0;
    for (const auto& [begin, end] : busy) {
      if (offset + size <= begin) break;
      offset = std::max(offset, end);
    }
    plan.offsets[r] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    placed.push_back(r);
  }
  return plan;
}

}  // namespace tinyfed::models::internal
