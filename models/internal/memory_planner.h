// Places buffers with known lifetimes in one arena so that buffers whose
// lifetimes do not overlap share memory. Greedy by size, as tflite-micro's
// GreedyMemoryPlanner: the largest buffer goes first, each at the lowest
// offset that clears every overlapping buffer already placed.
#ifndef TINYFED_MODELS_INTERNAL_MEMORY_PLANNER_H_
#define TINYFED_MODELS_INTERNAL_MEMORY_PLANNER_H_

#include <cstdint>
#include <vector>

namespace tinyfed::models::internal {

inline constexpr uint64_t kArenaAlignment = 64;
// Extra bytes after the last buffer, so vector kernels may over-read and
// over-write the end of a buffer by up to one vector.
inline constexpr uint64_t kArenaSlackBytes = 64;

struct BufferRequest {
  uint64_t bytes = 0;
  int first_use = 0;  // inclusive; steps are op indices
  int last_use = 0;   // inclusive
};

struct MemoryPlan {
  std::vector<uint64_t> offsets;  // one per request, aligned to kArenaAlignment
  uint64_t arena_bytes = 0;
};

MemoryPlan PlanMemory(const std::vector<BufferRequest>& requests);

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_MEMORY_PLANNER_H_
