#include "secure_agg/internal/crypto.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tinyfed::secagg {

namespace {

class OsRng : public Random {
 public:
  void Fill(std::span<uint8_t> out) override { randombytes_buf(out.data(), out.size()); }
};

class ChaChaRng : public Random {
 public:
  explicit ChaChaRng(const std::array<uint8_t, 32>& seed) : key_(seed) {}
  ~ChaChaRng() override { sodium_memzero(key_.data(), key_.size()); }
  void Fill(std::span<uint8_t> out) override {
    std::array<uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
    std::memcpy(nonce.data(), &counter_, sizeof(counter_));
    ++counter_;  // a fresh nonce per call keeps the stream from repeating
    std::memset(out.data(), 0, out.size());
    crypto_stream_chacha20_ietf_xor(out.data(), out.data(), out.size(), nonce.data(), key_.data());
  }

 private:
  std::array<uint8_t, 32> key_;
  uint64_t counter_ = 0;
};

}  // namespace

std::unique_ptr<Random> OsRandom() { return std::make_unique<OsRng>(); }

std::unique_ptr<Random> SeededRandom(const std::array<uint8_t, 32>& seed) { return std::make_unique<ChaChaRng>(seed); }

namespace internal {

KeyPair GenerateKeyPair(Random& rng) {
  KeyPair kp;
  rng.Fill(kp.secret.bytes);
  crypto_scalarmult_base(kp.public_key.data(), kp.secret.bytes.data());
  return kp;
}

Key PublicKeyOf(const SecretKey& secret) {
  Key pk;
  crypto_scalarmult_base(pk.data(), secret.bytes.data());
  return pk;
}

SecretSeed RandomSeed(Random& rng) {
  SecretSeed seed;
  for (size_t word = 0; word < kSeedBytes / 8; ++word) {
    uint64_t v;
    do {
      rng.Fill(std::span(reinterpret_cast<uint8_t*>(&v), sizeof(v)));
    } while (v >= kFieldPrime);  // once in 2^58 draws
    std::memcpy(seed.bytes.data() + 8 * word, &v, 8);
    sodium_memzero(&v, sizeof(v));
  }
  return seed;
}

namespace {
SecretKey Expand(const SecretSeed& seed, std::string_view purpose) {
  SecretKey out;
  crypto_generichash(out.bytes.data(), out.bytes.size(), seed.bytes.data(), seed.bytes.size(),
                     reinterpret_cast<const uint8_t*>(purpose.data()), purpose.size());
  return out;
}
}  // namespace

KeyPair MaskingKeyPairOf(const SecretSeed& seed) {
  KeyPair kp;
  kp.secret = Expand(seed, "tinyfed secagg masking key v2");
  kp.public_key = PublicKeyOf(kp.secret);
  return kp;
}

SecretKey SelfMaskKeyOf(const SecretSeed& seed) { return Expand(seed, "tinyfed secagg self mask v2"); }

absl::StatusOr<SecretKey> AgreeKey(const SecretKey& own_secret, const Key& peer_public, Purpose purpose,
                                   uint64_t round_id, uint32_t id_a, uint32_t id_b) {
  SecretKey shared;
  if (crypto_scalarmult(shared.bytes.data(), own_secret.bytes.data(), peer_public.data()) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer public key of client ", id_a == id_b ? id_a : id_b, " is a low-order point"));
  }
  const uint32_t lo = std::min(id_a, id_b), hi = std::max(id_a, id_b);
  uint8_t context[1 + 8 + 4 + 4];
  context[0] = static_cast<uint8_t>(purpose);
  for (int i = 0; i < 8; ++i) context[1 + i] = static_cast<uint8_t>(round_id >> (8 * i));
  for (int i = 0; i < 4; ++i) context[9 + i] = static_cast<uint8_t>(lo >> (8 * i));
  for (int i = 0; i < 4; ++i) context[13 + i] = static_cast<uint8_t>(hi >> (8 * i));
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, 32);
  static constexpr char kLabel[] = "tinyfed secagg v1";
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kLabel), sizeof(kLabel) - 1);
  crypto_generichash_update(&state, context, sizeof(context));
  crypto_generichash_update(&state, shared.bytes.data(), shared.bytes.size());
  SecretKey derived;
  crypto_generichash_final(&state, derived.bytes.data(), derived.bytes.size());
  sodium_memzero(&state, sizeof(state));
  return derived;
}

std::string Commitment(Committed what, uint64_t round_id, uint32_t owner, uint32_t holder, std::string_view bytes) {
  std::string out(what == Committed::kSelfMaskSeed ? kSeedCommitmentBytes : kShareCommitmentBytes, '\0');
  crypto_generichash_state h;
  crypto_generichash_init(&h, nullptr, 0, out.size());
  static constexpr char kDomain[] = "tinyfed secagg commitment v2";
  crypto_generichash_update(&h, reinterpret_cast<const uint8_t*>(kDomain), sizeof(kDomain));
  const uint8_t kind = static_cast<uint8_t>(what);
  crypto_generichash_update(&h, &kind, 1);
  uint8_t fields[16];
  for (int i = 0; i < 8; ++i) fields[i] = static_cast<uint8_t>(round_id >> (8 * i));
  for (int i = 0; i < 4; ++i) fields[8 + i] = static_cast<uint8_t>(owner >> (8 * i));
  for (int i = 0; i < 4; ++i) fields[12 + i] = static_cast<uint8_t>(holder >> (8 * i));
  crypto_generichash_update(&h, fields, sizeof(fields));
  crypto_generichash_update(&h, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  crypto_generichash_final(&h, reinterpret_cast<uint8_t*>(out.data()), out.size());
  return out;
}

std::string CipherShares(const SecretKey& key, std::string_view in, uint32_t sender, uint32_t recipient) {
  std::array<uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
  for (int i = 0; i < 4; ++i) nonce[static_cast<size_t>(i)] = static_cast<uint8_t>(sender >> (8 * i));
  for (int i = 0; i < 4; ++i) nonce[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(recipient >> (8 * i));
  std::string out(in.size(), '\0');
  crypto_stream_chacha20_ietf_xor(reinterpret_cast<uint8_t*>(out.data()), reinterpret_cast<const uint8_t*>(in.data()),
                                  in.size(), nonce.data(), key.bytes.data());
  return out;
}

void AddMask(const SecretKey& seed, int sign, int bits, std::span<uint32_t> values) {
  constexpr size_t kChunk = 4096;  // values per keystream call; chunk bytes stay a multiple of 64
  const size_t width = static_cast<size_t>((bits + 7) / 8);  // keystream bytes per value
  const uint32_t mask = bits == 32 ? ~uint32_t{0} : (uint32_t{1} << bits) - 1;
  std::array<uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
  std::vector<uint8_t> stream(kChunk * width);
  for (size_t first = 0; first < values.size(); first += kChunk) {
    const size_t n = std::min(kChunk, values.size() - first);
    std::memset(stream.data(), 0, n * width);
    // One continuous stream: the block counter is the chunk's byte offset / 64.
    crypto_stream_chacha20_ietf_xor_ic(stream.data(), stream.data(), n * width, nonce.data(),
                                       static_cast<uint32_t>(first * width / 64), seed.bytes.data());
    uint32_t* v = values.data() + first;
    const uint8_t* b = stream.data();
    // Fixed-width loops so the compiler vectorizes them (little-endian reads).
    auto apply = [&](auto read) {
      if (sign > 0) {
        for (size_t i = 0; i < n; ++i) v[i] = (v[i] + read(i)) & mask;
      } else {
        for (size_t i = 0; i < n; ++i) v[i] = (v[i] - read(i)) & mask;
      }
    };
    switch (width) {
      case 1:
        apply([&](size_t i) { return uint32_t{b[i]}; });
        break;
      case 2:
        apply([&](size_t i) { return uint32_t{b[2 * i]} | uint32_t{b[2 * i + 1]} << 8; });
        break;
      case 3:
        apply(
            [&](size_t i) { return uint32_t{b[3 * i]} | uint32_t{b[3 * i + 1]} << 8 | uint32_t{b[3 * i + 2]} << 16; });
        break;
      default:
        apply([&](size_t i) {
          return uint32_t{b[4 * i]} | uint32_t{b[4 * i + 1]} << 8 | uint32_t{b[4 * i + 2]} << 16 |
                 uint32_t{b[4 * i + 3]} << 24;
        });
    }
  }
  sodium_memzero(stream.data(), stream.size());
}

}  // namespace internal
}  // namespace tinyfed::secagg
