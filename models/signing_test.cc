#include "tinyfed/models/signing.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::models {
namespace {

std::string BundleFile() {
  std::mt19937 rng(1);
  return EncodeBundleFile(testing::RandomSingleOpBundle(v1::Op::kConv2D, testing::ConvSpec{}, rng));
}

TEST(Signing, SignedBundleVerifiesAndDecodes) {
  const SigningKey key = SigningKey::Generate();
  const auto signed_bundle = SignBundle(BundleFile(), 3, key);
  auto bundle = VerifySignedBundle(signed_bundle, key.public_key(), 2, signed_bundle.sha256());
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(bundle->backbone().ops_size(), 1);
}

TEST(Signing, RefusesEveryTamperingAndRollback) {
  const SigningKey key = SigningKey::Generate();
  const SigningKey other = SigningKey::Generate();
  const auto good = SignBundle(BundleFile(), 5, key);
  auto code = [&](const v1::SignedBundle& s, uint64_t installed, std::optional<std::string> announced = {}) {
    return VerifySignedBundle(s, key.public_key(), installed, announced).status().code();
  };
  auto bytes = good;
  bytes.mutable_bundle()->back() ^= 1;
  EXPECT_EQ(code(bytes, 0), absl::StatusCode::kPermissionDenied);  // tampered bundle
  auto sig = good;
  (*sig.mutable_signature())[0] ^= 1;
  EXPECT_EQ(code(sig, 0), absl::StatusCode::kPermissionDenied);  // tampered signature
  auto bumped = good;
  bumped.set_version(6);
  EXPECT_EQ(code(bumped, 0), absl::StatusCode::kPermissionDenied);  // version not signed
  EXPECT_EQ(code(SignBundle(BundleFile(), 5, other), 0), absl::StatusCode::kPermissionDenied);  // foreign key
  EXPECT_EQ(code(good, 5), absl::StatusCode::kFailedPrecondition);  // replay of the installed version
  EXPECT_EQ(code(good, 9), absl::StatusCode::kFailedPrecondition);  // rollback
  EXPECT_EQ(code(good, 0, std::string(32, 'x')), absl::StatusCode::kFailedPrecondition);  // not announced
  auto invalid = SignBundle("not a bundle at all, but signed", 7, key);
  EXPECT_EQ(code(invalid, 0), absl::StatusCode::kInvalidArgument);
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
