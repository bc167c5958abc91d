#include "tinyfed/base/seed.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <array>

namespace tinyfed::base {
namespace {

std::array<uint8_t, 32> Seed(uint64_t s, uint64_t round, std::string_view device, std::string_view purpose) {
  std::array<uint8_t, 32> out{};
  DeriveSeed(s, round, device, purpose, out);
  return out;
}

TEST(DeriveSeed, RepeatsAndSeparatesEveryInput) {
  ASSERT_GE(sodium_init(), 0);
  EXPECT_EQ(Seed(1, 2, "clinic", "dp"), Seed(1, 2, "clinic", "dp"));
  EXPECT_NE(Seed(1, 2, "clinic", "dp"), Seed(2, 2, "clinic", "dp"));
  EXPECT_NE(Seed(1, 2, "clinic", "dp"), Seed(1, 3, "clinic", "dp"));
  EXPECT_NE(Seed(1, 2, "clinic", "dp"), Seed(1, 2, "clinic2", "dp"));
  EXPECT_NE(Seed(1, 2, "clinic", "dp"), Seed(1, 2, "clinic", "secagg"));
}

// The aggregator's seeds (no device) and a gateway's are the same function:
// BLAKE2b-256 of the two words, the device and the purpose.
TEST(DeriveSeed, IsBlake2bOfItsInputs) {
  ASSERT_GE(sodium_init(), 0);
  const uint64_t words[2] = {7, 9};
  std::string input(reinterpret_cast<const char*>(words), sizeof(words));
  input += "rotation";
  std::array<uint8_t, 32> expected{};
  crypto_generichash(expected.data(), expected.size(), reinterpret_cast<const uint8_t*>(input.data()), input.size(),
                     nullptr, 0);
  EXPECT_EQ(Seed(7, 9, "", "rotation"), expected);
}

}  // namespace
}  // namespace tinyfed::base
