// The cryptographic steps of SecAgg+, each a thin use of libsodium:
// X25519 key agreement, BLAKE2b key derivation bound to round and ids,
// XChaCha20-Poly1305 for shares, ChaCha20 expansion of mask seeds.
#ifndef TINYFED_SECURE_AGG_INTERNAL_CRYPTO_H_
#define TINYFED_SECURE_AGG_INTERNAL_CRYPTO_H_

#include <sodium.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tinyfed/secure_agg/random.h"

namespace tinyfed::secagg::internal {

using Key = std::array<uint8_t, 32>;  // secret keys, public keys, seeds, derived keys

// Zeroes itself on destruction: for every secret that lives in a variable.
struct SecretKey {
  Key bytes{};
  SecretKey() = default;
  ~SecretKey() { sodium_memzero(bytes.data(), bytes.size()); }
  SecretKey(const SecretKey& o) : bytes(o.bytes) {}
  SecretKey& operator=(const SecretKey& o) {
    bytes = o.bytes;
    return *this;
  }
};

struct KeyPair {
  SecretKey secret;
  Key public_key{};
};

KeyPair GenerateKeyPair(Random& rng);
// The public key of a secret key (used by the server on reconstructed keys).
Key PublicKeyOf(const SecretKey& secret);

enum class Purpose : uint8_t { kShareEncryption = 1, kPairwiseMask = 2 };

// BLAKE2b-256 over (purpose, round, lower id, higher id, X25519(secret, peer)):
// the same key on both sides, and a different key for every round, pair and
// purpose. INVALID_ARGUMENT for a low-order peer key (all-zero shared secret).
absl::StatusOr<SecretKey> AgreeKey(const SecretKey& own_secret, const Key& peer_public, Purpose purpose,
                                   uint64_t round_id, uint32_t id_a, uint32_t id_b);

// XChaCha20-Poly1305 with associated data binding round, sender and recipient.
struct Sealed {
  std::string nonce;
  std::string ciphertext;
};
Sealed SealShare(const SecretKey& key, std::string_view plaintext, uint64_t round_id, uint32_t sender,
                 uint32_t recipient, Random& rng);
absl::StatusOr<std::string> OpenShare(const SecretKey& key, const Sealed& sealed, uint64_t round_id, uint32_t sender,
                                      uint32_t recipient);

// What a dealer commits to, so that the server can check what holders reveal
// and what it rebuilds: BLAKE2b-256 over (what, round, owner, holder, bytes).
// Shares and seeds are uniform and 256 bits or more, so a commitment gives
// nothing away.
enum class Committed : uint8_t { kMaskingKeyShare = 1, kSelfMaskShare = 2, kSelfMaskSeed = 3 };
std::string Commitment(Committed what, uint64_t round_id, uint32_t owner, uint32_t holder, std::string_view bytes);

// Adds sign * PRG(seed) to `values` modulo 2^bits (sign is +1 or -1). The
// PRG is ChaCha20 (IETF, zero nonce) read as consecutive little-endian
// values of ceil(bits / 8) bytes, each masked to `bits`: uniform in
// Z_{2^bits} because 2^bits divides 2^(8 ceil(bits / 8)), and no more
// keystream than the width needs (half of it for 16-bit sums).
void AddMask(const SecretKey& seed, int sign, int bits, std::span<uint32_t> values);

}  // namespace tinyfed::secagg::internal

#endif  // TINYFED_SECURE_AGG_INTERNAL_CRYPTO_H_
