#include "secure_agg/internal/shamir.h"

#include <cstring>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::secagg::internal {
namespace {

constexpr size_t kWords = kSeedBytes / 8;

uint64_t Add(uint64_t a, uint64_t b) {
  const absl::uint128 r = absl::uint128(a) + b;
  return r >= kFieldPrime ? absl::Uint128Low64(r - kFieldPrime) : absl::Uint128Low64(r);
}
uint64_t Sub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + (kFieldPrime - b); }
uint64_t Mul(uint64_t a, uint64_t b) { return absl::Uint128Low64(absl::uint128(a) * b % kFieldPrime); }
uint64_t Pow(uint64_t a, uint64_t e) {
  uint64_t r = 1;
  for (; e; e >>= 1, a = Mul(a, a)) {
    if (e & 1) r = Mul(r, a);
  }
  return r;
}
uint64_t Inverse(uint64_t a) { return Pow(a, kFieldPrime - 2); }

uint64_t RandomElement(Random& rng) {
  for (;;) {
    uint64_t v;
    rng.Fill(std::span(reinterpret_cast<uint8_t*>(&v), sizeof(v)));
    if (v < kFieldPrime) return v;
  }
}

uint64_t Word(const uint8_t* bytes, size_t word) {
  uint64_t w;
  std::memcpy(&w, bytes + 8 * word, 8);
  return w;
}

}  // namespace

std::vector<std::string> SplitSecret(const SecretSeed& secret, int threshold, const std::vector<uint64_t>& points,
                                     Random& rng) {
  std::vector<std::string> shares(points.size(), std::string(kShareBytes, '\0'));
  std::vector<uint64_t> coef(static_cast<size_t>(threshold));
  for (size_t word = 0; word < kWords; ++word) {
    coef[0] = Word(secret.bytes.data(), word);
    for (int c = 1; c < threshold; ++c) coef[static_cast<size_t>(c)] = RandomElement(rng);
    for (size_t i = 0; i < points.size(); ++i) {
      uint64_t y = 0;  // Horner
      for (int c = threshold - 1; c >= 0; --c) y = Add(Mul(y, points[i]), coef[static_cast<size_t>(c)]);
      std::memcpy(shares[i].data() + 8 * word, &y, 8);
    }
  }
  sodium_memzero(coef.data(), coef.size() * sizeof(uint64_t));
  return shares;
}

absl::StatusOr<SecretSeed> CombineShares(const std::vector<uint64_t>& points, const std::vector<std::string>& shares,
                                         int threshold) {
  if (static_cast<int>(shares.size()) < threshold || shares.size() != points.size() || threshold < 1) {
    return absl::InvalidArgumentError(absl::StrCat(shares.size(), " shares, need ", threshold));
  }
  const size_t t = static_cast<size_t>(threshold);
  // Lagrange coefficients at 0 over the first t points.
  std::vector<uint64_t> lambda(t);
  for (size_t i = 0; i < t; ++i) {
    if (points[i] == 0 || points[i] >= kFieldPrime) return absl::InvalidArgumentError("bad share point");
    uint64_t num = 1, den = 1;
    for (size_t j = 0; j < t; ++j) {
      if (j == i) continue;
      if (points[j] == points[i]) return absl::InvalidArgumentError("duplicate share point");
      num = Mul(num, points[j]);
      den = Mul(den, Sub(points[j], points[i]));
    }
    lambda[i] = Mul(num, Inverse(den));
  }
  SecretSeed secret;
  for (size_t word = 0; word < kWords; ++word) {
    uint64_t s = 0;
    for (size_t i = 0; i < t; ++i) {
      if (shares[i].size() != kShareBytes) return absl::InvalidArgumentError("malformed share");
      const uint64_t y = Word(reinterpret_cast<const uint8_t*>(shares[i].data()), word);
      if (y >= kFieldPrime) return absl::InvalidArgumentError("share value outside the field");
      s = Add(s, Mul(y, lambda[i]));
    }
    std::memcpy(secret.bytes.data() + 8 * word, &s, 8);
  }
  return secret;
}

}  // namespace tinyfed::secagg::internal
