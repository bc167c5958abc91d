#include "tinyfed/base/seed.h"

#include <sodium.h>

namespace tinyfed::base {

void DeriveSeed(uint64_t simulation_seed, uint64_t round_id, std::string_view device_id, std::string_view purpose,
                std::span<uint8_t> out) {
  crypto_generichash_state h;
  crypto_generichash_init(&h, nullptr, 0, out.size());
  const uint64_t words[2] = {simulation_seed, round_id};
  crypto_generichash_update(&h, reinterpret_cast<const uint8_t*>(words), sizeof(words));
  crypto_generichash_update(&h, reinterpret_cast<const uint8_t*>(device_id.data()), device_id.size());
  crypto_generichash_update(&h, reinterpret_cast<const uint8_t*>(purpose.data()), purpose.size());
  crypto_generichash_final(&h, out.data(), out.size());
}

}  // namespace tinyfed::base
