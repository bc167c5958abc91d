// Randomness for SecAgg+, injected so tests can be deterministic. Production
// uses the OS CSPRNG (libsodium randombytes); tests use a seeded ChaCha20
// stream. Not thread-safe.
#ifndef TINYFED_SECURE_AGG_RANDOM_H_
#define TINYFED_SECURE_AGG_RANDOM_H_

#include <array>
#include <cstdint>
#include <memory>
#include <span>

namespace tinyfed::secagg {

class Random {
 public:
  virtual ~Random() = default;
  virtual void Fill(std::span<uint8_t> out) = 0;
};

// libsodium's randombytes. Like every libsodium user beneath an entry point,
// it assumes base::InitSodium() (Client::Create and Server::Create call it).
std::unique_ptr<Random> OsRandom();
// A ChaCha20 stream from `seed`: repeatable for a fixed seed (tests, golden
// vectors, simulations), as unpredictable as the seed when it is drawn
// from a secure source (a gateway seeds it from its Env).
std::unique_ptr<Random> SeededRandom(const std::array<uint8_t, 32>& seed);

}  // namespace tinyfed::secagg

#endif  // TINYFED_SECURE_AGG_RANDOM_H_
