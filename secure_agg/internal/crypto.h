// The cryptographic steps of SecAgg+, each a thin use of libsodium:
// X25519 key agreement, BLAKE2b key derivation bound to round and ids,
// BLAKE2b commitments, ChaCha20 for shares and for the expansion of masks.
//
// What a client Shamir-shares is a 128-bit seed (SecretSeed), not a 32-byte
// key: its masking key and its self mask are both expanded from one, so a
// share is 16 bytes (shamir.h). 128 bits is X25519's own security level.
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
// The public key of a secret key.
Key PublicKeyOf(const SecretKey& secret);

// Shamir sharing works in GF(p) for the largest 64-bit prime p.
inline constexpr uint64_t kFieldPrime = ~uint64_t{0} - 58;  // 2^64 - 59

// A shared secret: two little-endian 64-bit words, each below kFieldPrime,
// so that it is a pair of field elements as it stands.
inline constexpr size_t kSeedBytes = 16;
struct SecretSeed {
  std::array<uint8_t, kSeedBytes> bytes{};
  SecretSeed() = default;
  ~SecretSeed() { sodium_memzero(bytes.data(), bytes.size()); }
  SecretSeed(const SecretSeed& o) : bytes(o.bytes) {}
  SecretSeed& operator=(const SecretSeed& o) {
    bytes = o.bytes;
    return *this;
  }
};
SecretSeed RandomSeed(Random& rng);

// What a seed expands to (BLAKE2b-256 keyed by purpose): the X25519 masking
// key pair, whose public half the server checks a rebuilt seed against, and
// the ChaCha20 key of the self mask.
KeyPair MaskingKeyPairOf(const SecretSeed& seed);
SecretKey SelfMaskKeyOf(const SecretSeed& seed);

enum class Purpose : uint8_t { kShareEncryption = 1, kPairwiseMask = 2 };

// BLAKE2b-256 over (purpose, round, lower id, higher id, X25519(secret, peer)):
// the same key on both sides, and a different key for every round, pair and
// purpose. INVALID_ARGUMENT for a low-order peer key (all-zero shared secret).
absl::StatusOr<SecretKey> AgreeKey(const SecretKey& own_secret, const Key& peer_public, Purpose purpose,
                                   uint64_t round_id, uint32_t id_a, uint32_t id_b);

// What a dealer commits to, so that the server can check what holders reveal
// and what it rebuilds: BLAKE2b over (what, round, owner, holder, bytes),
// 16 bytes for a share and 32 for the seed. Shares and seeds are uniform
// 128-bit values, so a commitment gives nothing away.
//
// Why 16 bytes binds a share well enough: a lying holder must find a second
// preimage (2^128 work) within the round. A dealer could find a colliding
// pair (2^64), but a wrong share that passes then only makes the rebuilt seed
// or masking key fail its full-strength check (the 32-byte seed commitment,
// the advertised public key) and the round abort, which a dealer can do
// anyway by dealing inconsistent shares. Nothing wrong reaches the sum.
enum class Committed : uint8_t { kMaskingKeyShare = 1, kSelfMaskShare = 2, kSelfMaskSeed = 3 };
inline constexpr size_t kShareCommitmentBytes = 16;
inline constexpr size_t kSeedCommitmentBytes = 32;
std::string Commitment(Committed what, uint64_t round_id, uint32_t owner, uint32_t holder, std::string_view bytes);

// A share pair travels as ChaCha20 (IETF) under the pair's share key, with
// the nonce (sender, recipient): the key is fresh each round (fresh X25519
// keys, the round in the derivation) and encrypts one message each way, so
// no nonce repeats and none need travel. There is no tag: the recipient
// checks both decrypted halves against the sender's commitments, which a
// relay that knows neither the key nor the shares cannot make match (it
// would need the hash of a 128-bit value it cannot see). Encrypts and
// decrypts alike.
std::string CipherShares(const SecretKey& key, std::string_view in, uint32_t sender, uint32_t recipient);

// Adds sign * PRG(seed) to `values` modulo 2^bits (sign is +1 or -1). The
// PRG is ChaCha20 (IETF, zero nonce) read as consecutive little-endian
// values of ceil(bits / 8) bytes, each masked to `bits`: uniform in
// Z_{2^bits} because 2^bits divides 2^(8 ceil(bits / 8)), and no more
// keystream than the width needs (half of it for 16-bit sums).
void AddMask(const SecretKey& seed, int sign, int bits, std::span<uint32_t> values);

}  // namespace tinyfed::secagg::internal

#endif  // TINYFED_SECURE_AGG_INTERNAL_CRYPTO_H_
