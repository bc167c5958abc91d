#include "tinyfed/sim/dropout.h"

namespace tinyfed::sim {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

int DropPhase(uint64_t seed, std::string_view device, uint64_t round_id, const std::array<double, 4>& probabilities) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a of the device id
  for (char c : device) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  uint64_t state = SplitMix64(seed ^ SplitMix64(h ^ SplitMix64(round_id)));
  for (int i = 0; i < 4; ++i) {
    state = SplitMix64(state);
    const double u = static_cast<double>(state >> 11) * 0x1.0p-53;
    if (u < probabilities[static_cast<size_t>(i)]) return i;
  }
  return -1;
}

}  // namespace tinyfed::sim
