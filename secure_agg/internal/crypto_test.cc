// Golden vectors (fixed keys and seeds, expected bytes checked in; the ones
// tinyfed defines were computed with Python's cryptography and hashlib) for
// key agreement, key derivation, commitments, share encryption, seed and mask
// expansion, and property tests of Shamir sharing.
#include "secure_agg/internal/crypto.h"

#include <cstring>
#include <random>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "secure_agg/internal/shamir.h"

namespace tinyfed::secagg::internal {
namespace {

Key Hex(std::string_view hex) {
  const std::string bytes = absl::HexStringToBytes(absl::string_view(hex.data(), hex.size()));
  Key k{};
  std::copy(bytes.begin(), bytes.end(), k.begin());
  return k;
}
std::string HexOf(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}
std::string HexOf(const Key& k) { return HexOf(std::string_view(reinterpret_cast<const char*>(k.data()), k.size())); }

SecretKey Secret(std::string_view hex) {
  SecretKey s;
  s.bytes = Hex(hex);
  return s;
}

// RFC 7748 section 6.1.
TEST(Golden, X25519MatchesRfc7748) {
  const SecretKey alice = Secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const SecretKey bob = Secret("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  EXPECT_EQ(HexOf(PublicKeyOf(alice)), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  EXPECT_EQ(HexOf(PublicKeyOf(bob)), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  Key shared;
  ASSERT_EQ(crypto_scalarmult(shared.data(), alice.bytes.data(), PublicKeyOf(bob).data()), 0);
  EXPECT_EQ(HexOf(shared), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

TEST(Golden, KeyDerivationIsSymmetricAndBoundToRoundPairAndPurpose) {
  const SecretKey alice = Secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const SecretKey bob = Secret("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  auto ab = AgreeKey(alice, PublicKeyOf(bob), Purpose::kPairwiseMask, 7, 3, 9);
  auto ba = AgreeKey(bob, PublicKeyOf(alice), Purpose::kPairwiseMask, 7, 9, 3);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(HexOf(ab->bytes), HexOf(ba->bytes));
  EXPECT_EQ(HexOf(ab->bytes), "3e4909b355657c080aef521004947185486b76318432a5d1f88011a10a3b66f6");
  EXPECT_NE(HexOf(AgreeKey(alice, PublicKeyOf(bob), Purpose::kShareEncryption, 7, 3, 9)->bytes), HexOf(ab->bytes));
  EXPECT_NE(HexOf(AgreeKey(alice, PublicKeyOf(bob), Purpose::kPairwiseMask, 8, 3, 9)->bytes), HexOf(ab->bytes));
  EXPECT_NE(HexOf(AgreeKey(alice, PublicKeyOf(bob), Purpose::kPairwiseMask, 7, 3, 10)->bytes), HexOf(ab->bytes));
  EXPECT_FALSE(AgreeKey(alice, Key{}, Purpose::kPairwiseMask, 7, 3, 9).ok());  // low-order point
}

TEST(Golden, ShareEncryption) {
  const SecretKey key = Secret("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  const std::string plain(32, '\0');
  const std::string sealed = CipherShares(key, plain, 1, 2);
  // Raw ChaCha20 keystream under that key, nonce (1, 2) little-endian
  // (computed with Python's cryptography package, not with libsodium).
  EXPECT_EQ(HexOf(sealed), "78a8a2bf5027c5ef8ea3d74fff637942dcfd69e4ff5a42eca9382f28c0d3d046");
  EXPECT_EQ(CipherShares(key, sealed, 1, 2), plain);
  // Each direction of a pair has its own stream, so one key never repeats one.
  EXPECT_NE(CipherShares(key, plain, 2, 1), sealed);
  Key other = key.bytes;
  other[0] ^= 1;
  SecretKey other_key;
  other_key.bytes = other;
  EXPECT_NE(CipherShares(other_key, plain, 1, 2), sealed);
}

TEST(Golden, CommitmentsAreBoundToWhatRoundOwnerAndHolder) {
  const std::string share(16, 'a');
  const std::string c = Commitment(Committed::kSelfMaskShare, 7, 1, 2, share);
  EXPECT_EQ(c.size(), kShareCommitmentBytes);
  EXPECT_EQ(HexOf(c), "c3b36710e76e92c435a77219a0916b00");
  EXPECT_EQ(Commitment(Committed::kSelfMaskSeed, 7, 1, 1, share).size(), kSeedCommitmentBytes);
  EXPECT_NE(Commitment(Committed::kMaskingKeyShare, 7, 1, 2, share), c);
  EXPECT_NE(Commitment(Committed::kSelfMaskShare, 8, 1, 2, share), c);
  EXPECT_NE(Commitment(Committed::kSelfMaskShare, 7, 2, 1, share), c);
  EXPECT_NE(Commitment(Committed::kSelfMaskShare, 7, 1, 2, std::string(16, 'b')), c);
}

// A seed stands for a masking key pair and a self-mask key, different from
// each other and fixed by the seed alone: the server rebuilds both from it.
TEST(Golden, SeedExpansion) {
  SecretSeed seed;
  for (size_t i = 0; i < seed.bytes.size(); ++i) seed.bytes[i] = static_cast<uint8_t>(i);
  const KeyPair masking = MaskingKeyPairOf(seed);
  EXPECT_EQ(masking.public_key, PublicKeyOf(masking.secret));
  EXPECT_EQ(HexOf(masking.public_key), "75ae85971feb39135bf24d0f9e51c4f4c95b83435b99e75a2834a049ddd00017");
  EXPECT_EQ(HexOf(SelfMaskKeyOf(seed).bytes), "6ac5f6c9945626d144de245ecd9e366d3f8506a9e3a3612d6e9fd5ce59031bbb");
  EXPECT_NE(SelfMaskKeyOf(seed).bytes, masking.secret.bytes);
  // Random seeds are pairs of field elements.
  auto rng = SeededRandom({5});
  for (int i = 0; i < 1000; ++i) {
    const SecretSeed s = RandomSeed(*rng);
    uint64_t words[2];
    std::memcpy(words, s.bytes.data(), sizeof(words));
    ASSERT_LT(words[0], kFieldPrime);
    ASSERT_LT(words[1], kFieldPrime);
  }
}

TEST(Golden, MaskExpansion) {
  const SecretKey seed = Secret("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  std::vector<uint32_t> v(6, 0);
  AddMask(seed, +1, 16, v);
  std::string got;
  for (uint32_t x : v) got += std::to_string(x) + " ";
  EXPECT_EQ(got, "64825 32043 50649 27161 48525 30467 ");
  // Adding then subtracting the same mask restores the values, across the
  // keystream-chunk boundary too.
  std::vector<uint32_t> w(10000, 123), before = w;
  AddMask(seed, +1, 20, w);
  AddMask(seed, -1, 20, w);
  EXPECT_EQ(w, before);
  // Masks are uniform in Z_{2^b}: mean near 2^(b-1).
  std::vector<uint32_t> u(100000, 0);
  AddMask(seed, +1, 8, u);
  double mean = 0;
  for (uint32_t x : u) mean += x;
  EXPECT_NEAR(mean / static_cast<double>(u.size()), 127.5, 1.0);
}

TEST(Shamir, AnyThresholdSubsetReconstructsAndFewerDoNot) {
  auto rng = SeededRandom({7});
  std::mt19937 pick(3);
  for (int trial = 0; trial < 50; ++trial) {
    const SecretSeed secret = RandomSeed(*rng);
    const int k = 2 + static_cast<int>(pick() % 30);
    const int t = 1 + static_cast<int>(pick() % static_cast<uint32_t>(k));
    std::vector<uint64_t> points;
    for (int i = 0; i < k; ++i) points.push_back(1 + pick() % 100000 * 37 + static_cast<uint64_t>(i));
    auto shares = SplitSecret(secret, t, points, *rng);
    std::vector<int> order(static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) order[static_cast<size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), pick);
    std::vector<uint64_t> p;
    std::vector<std::string> s;
    for (int i = 0; i < t; ++i) {
      p.push_back(points[static_cast<size_t>(order[static_cast<size_t>(i)])]);
      s.push_back(shares[static_cast<size_t>(order[static_cast<size_t>(i)])]);
    }
    auto back = CombineShares(p, s, t);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->bytes, secret.bytes);
    if (t > 1) {
      p.pop_back();
      s.pop_back();
      EXPECT_FALSE(CombineShares(p, s, t).ok());
      auto wrong = CombineShares(p, s, t - 1);  // t-1 shares interpolate to something else
      ASSERT_TRUE(wrong.ok());
      EXPECT_NE(wrong->bytes, secret.bytes);
    }
  }
}

}  // namespace
}  // namespace tinyfed::secagg::internal
