// Reproducible seeds for simulations: BLAKE2b over a simulation seed, a round,
// a device (empty for the aggregator's own) and a purpose, so that every
// random choice of a simulated federation repeats and no two purposes share
// a seed. Never in production: a predictable seed voids DP noise and
// secure aggregation.
#ifndef TINYFED_BASE_SEED_H_
#define TINYFED_BASE_SEED_H_

#include <cstdint>
#include <span>
#include <string_view>

namespace tinyfed::base {

// Fills `out` (1 to 64 bytes).
void DeriveSeed(uint64_t simulation_seed, uint64_t round_id, std::string_view device_id, std::string_view purpose,
                std::span<uint8_t> out);

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_SEED_H_
