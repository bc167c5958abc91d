// Cryptographically secure randomness for noise and rotations: a ChaCha20
// keystream (libsodium) under a 256-bit key. Keyed from the OS for noise; keyed
// from a known seed where a value must be reproducible (the cohort's shared
// rotation seed, tests). Not thread-safe; not copyable; wipes its key and
// buffer on destruction.
#ifndef TINYFED_DP_SECURE_RANDOM_H_
#define TINYFED_DP_SECURE_RANDOM_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/numeric/int128.h"

namespace tinyfed::dp {

using Seed = std::array<uint8_t, 32>;
using uint128 = absl::uint128;

// Both assume base::InitSodium() was called (every Create and Open that
// reaches them calls it).
class SecureRandom {
 public:
  static std::unique_ptr<SecureRandom> FromOsEntropy();
  static std::unique_ptr<SecureRandom> FromSeed(const Seed& seed);
  ~SecureRandom();
  SecureRandom(const SecureRandom&) = delete;
  SecureRandom& operator=(const SecureRandom&) = delete;

  uint64_t Next64();
  // Uniform in [0, n) by rejection (no modulo bias); n >= 1.
  uint64_t Uniform(uint64_t n);
  uint128 Uniform128(uint128 n);
  // True with probability numerator / denominator (numerator <= denominator).
  bool Bernoulli(uint128 numerator, uint128 denominator);

 private:
  explicit SecureRandom(const Seed& key);
  void Refill();

  static constexpr size_t kBufferBytes = 1024;
  std::array<uint8_t, 32> key_;
  std::array<uint8_t, kBufferBytes> buffer_;
  size_t used_ = kBufferBytes;
  uint32_t block_counter_ = 0;
  uint64_t nonce_ = 0;
};

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_SECURE_RANDOM_H_
