// Which phase of a round a simulated clinic loses power in: a pure function
// of the seed, the clinic and the round, so every transport (and a client
// in its own process) makes the same decision.
#ifndef TINYFED_SIM_DROPOUT_H_
#define TINYFED_SIM_DROPOUT_H_

#include <array>
#include <cstdint>
#include <string_view>

#include "tinyfed/v1/service.pb.h"

namespace tinyfed::sim {

// The phases a clinic may drop in, in order: training (before advertising
// keys, or before sending its update without SecAgg+), share_keys,
// masked_input, unmasking.
inline constexpr v1::Phase kDropPhases[] = {v1::PHASE_TASK, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT,
                                            v1::PHASE_UNMASKING};

// The index into kDropPhases where the clinic drops in this round, or -1.
// probabilities[i] is the chance of dropping in phase i given it got there.
int DropPhase(uint64_t seed, std::string_view device, uint64_t round_id, const std::array<double, 4>& probabilities);

}  // namespace tinyfed::sim

#endif  // TINYFED_SIM_DROPOUT_H_
