#include "tinyfed/base/env.h"

#include <gtest/gtest.h>

#include <array>
#include <filesystem>

#include "base/testing/fake_env.h"

namespace tinyfed::base {
namespace {

TEST(EnvTest, TheDefaultReadsTheWallClockAndDrawsFreshBytes) {
  Env& env = Env::Default();
  const absl::Time before = absl::Now();
  EXPECT_GE(env.Now(), before);
  std::array<uint8_t, 32> a{}, b{};
  env.RandomBytes(a);
  env.RandomBytes(b);
  EXPECT_NE(a, b);
}

TEST(EnvTest, TheDefaultWritesAndReadsFiles) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "env_test";
  std::filesystem::create_directories(dir);
  Env& env = Env::Default();
  ASSERT_TRUE(env.WriteFileAtomically(dir / "f", "bytes").ok());
  auto read = env.ReadFile(dir / "f", 16);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "bytes");
  EXPECT_EQ(env.ReadFile(dir / "f", 4).status().code(), absl::StatusCode::kOutOfRange);
  std::filesystem::remove_all(dir);
}

TEST(FakeEnvTest, TheClockMovesOnlyWhenAdvanced) {
  testing::FakeEnv env(7, absl::FromUnixSeconds(100));
  EXPECT_EQ(env.Now(), absl::FromUnixSeconds(100));
  EXPECT_EQ(env.Now(), absl::FromUnixSeconds(100));
  env.Advance(absl::Seconds(5));
  EXPECT_EQ(env.Now(), absl::FromUnixSeconds(105));
}

TEST(FakeEnvTest, RandomnessRepeatsForTheSameSeedAndNeverWithinARun) {
  testing::FakeEnv first(7), second(7), other(8);
  std::array<uint8_t, 100> a{}, b{}, c{}, d{};  // longer than one derived block
  first.RandomBytes(a);
  second.RandomBytes(b);
  other.RandomBytes(c);
  first.RandomBytes(d);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_NE(std::vector<uint8_t>(a.begin(), a.begin() + 64), std::vector<uint8_t>(a.begin() + 36, a.end()));
}

TEST(FakeEnvTest, WritesUnderAFailingDirectoryFailAndLeaveTheOldFile) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / "fake_env_test";
  std::filesystem::create_directories(dir);
  testing::FakeEnv env;
  ASSERT_TRUE(env.WriteFileAtomically(dir / "f", "old").ok());
  env.FailWritesUnder(dir);
  const absl::Status failed = env.WriteFileAtomically(dir / "f", "new");
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_NE(failed.message().find("No space left"), std::string_view::npos);
  EXPECT_EQ(*env.ReadFile(dir / "f", 16), "old");
  env.FailWritesUnder(std::nullopt);
  EXPECT_TRUE(env.WriteFileAtomically(dir / "f", "new").ok());
  EXPECT_EQ(*env.ReadFile(dir / "f", 16), "new");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tinyfed::base
