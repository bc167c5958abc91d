#include "tinyfed/dp/secure_random.h"

#include <sodium.h>

#include <cstring>

namespace tinyfed::dp {
namespace {

int BitLength(uint128 x) {
  int bits = 0;
  while (x) {
    ++bits;
    x >>= 1;
  }
  return bits;
}

}  // namespace

SecureRandom::SecureRandom(const Seed& key) : key_(key) {}

SecureRandom::~SecureRandom() {
  sodium_memzero(key_.data(), key_.size());
  sodium_memzero(buffer_.data(), buffer_.size());
}

std::unique_ptr<SecureRandom> SecureRandom::FromOsEntropy() {
  Seed key;
  randombytes_buf(key.data(), key.size());
  auto r = std::unique_ptr<SecureRandom>(new SecureRandom(key));
  sodium_memzero(key.data(), key.size());
  return r;
}

std::unique_ptr<SecureRandom> SecureRandom::FromSeed(const Seed& seed) {
  return std::unique_ptr<SecureRandom>(new SecureRandom(seed));
}

void SecureRandom::Refill() {
  // The keystream continues block by block; a new nonce after 2^32 blocks.
  std::array<uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
  std::memcpy(nonce.data(), &nonce_, sizeof(nonce_));
  std::memset(buffer_.data(), 0, buffer_.size());
  crypto_stream_chacha20_ietf_xor_ic(buffer_.data(), buffer_.data(), buffer_.size(), nonce.data(), block_counter_,
                                     key_.data());
  constexpr uint32_t kBlocks = kBufferBytes / 64;
  if (block_counter_ > UINT32_MAX - kBlocks) {
    block_counter_ = 0;
    ++nonce_;
  } else {
    block_counter_ += kBlocks;
  }
  used_ = 0;
}

uint64_t SecureRandom::Next64() {
  if (used_ + 8 > buffer_.size()) Refill();
  uint64_t v;
  std::memcpy(&v, buffer_.data() + used_, 8);
  used_ += 8;
  return v;
}

uint64_t SecureRandom::Uniform(uint64_t n) {
  if (n <= 1) return 0;
  const int bits = BitLength(n - 1);
  const uint64_t mask = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
  for (;;) {
    const uint64_t v = Next64() & mask;
    if (v < n) return v;
  }
}

uint128 SecureRandom::Uniform128(uint128 n) {
  if (absl::Uint128High64(n) == 0) return Uniform(absl::Uint128Low64(n));
  const int bits = BitLength(n - 1);
  const uint128 mask = bits == 128 ? absl::Uint128Max() : (uint128(1) << bits) - 1;
  for (;;) {
    const uint64_t high = Next64();
    const uint128 v = absl::MakeUint128(high, Next64()) & mask;
    if (v < n) return v;
  }
}

bool SecureRandom::Bernoulli(uint128 numerator, uint128 denominator) { return Uniform128(denominator) < numerator; }

}  // namespace tinyfed::dp
