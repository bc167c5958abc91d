#include "tinyfed/models/signing.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace tinyfed::models {
namespace {

TEST(Signing, SignaturesVerifyOnlyForTheirKeyAndMessage) {
  const SigningKey key = SigningKey::Generate();
  const SigningKey other = SigningKey::Generate();
  const std::string signature = key.Sign("message");
  EXPECT_TRUE(VerifySignature(key.public_key(), "message", signature));
  EXPECT_FALSE(VerifySignature(key.public_key(), "messagE", signature));
  EXPECT_FALSE(VerifySignature(other.public_key(), "message", signature));
  EXPECT_FALSE(VerifySignature(key.public_key(), "message", signature.substr(1)));
  EXPECT_EQ(*PublicKeyFromBytes(KeyBytes(key.public_key())), key.public_key());
  EXPECT_FALSE(PublicKeyFromBytes("short").ok());
}

TEST(Signing, KeyFilesRoundTripWithPrivatePermissions) {
  const auto dir = std::filesystem::path(::testing::TempDir());
  const SigningKey key = SigningKey::Generate();
  ASSERT_TRUE(WriteSigningKey(key, dir / "agg.key", dir / "agg.pub").ok());
  struct stat st;
  ASSERT_EQ(stat((dir / "agg.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto read = ReadSigningKey(dir / "agg.key");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->public_key(), key.public_key());
  EXPECT_EQ(*ReadPublicKey(dir / "agg.pub"), key.public_key());
  std::ofstream(dir / "short.key") << "abc";
  EXPECT_EQ(ReadSigningKey(dir / "short.key").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadSigningKey(dir / "missing.key").status().code(), absl::StatusCode::kNotFound);
  // A damaged secret (public half altered) is detected.
  std::string secret(64, '\0');
  std::ifstream(dir / "agg.key", std::ios::binary).read(secret.data(), 64);
  secret[40] ^= 1;
  std::ofstream(dir / "damaged.key", std::ios::binary) << secret;
  EXPECT_EQ(ReadSigningKey(dir / "damaged.key").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::models
