// A head-only release rebuilds the very bundle the release signs, and only
// on the backbone it was made for.
#include "tinyfed/models/head_release.h"

#include <random>

#include "base/testing/value_or_die.h"
#include "gtest/gtest.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::models {
namespace {

using base::testing::ValueOrDie;

v1::ModelBundle Bundle(uint64_t version, int backbone_seed) {
  std::mt19937 rng(backbone_seed);
  v1::ModelBundle b = testing::RandomSingleOpBundle(v1::Op::kConv2D, testing::ConvSpec{}, rng);
  b.mutable_metadata()->set_version(version);
  for (float& w : *b.mutable_head()->mutable_weights()) w += 0.01f * static_cast<float>(version);
  return b;
}

v1::SignedBundle Signed(const v1::ModelBundle& bundle, const SigningKey& key) {
  v1::SignedBundle out;
  out.set_bundle(EncodeBundleFile(bundle));
  v1::ReleaseMetadata release = ValueOrDie(DescribeRelease(out.bundle(), "clinics/fmnist"), "describing");
  release.set_version(1);
  const SigningKey* k = &key;
  *out.mutable_release() = SignRelease(release, {&k, 1});
  return out;
}

class HeadReleaseTest : public ::testing::Test {
 protected:
  SigningKey key_ = SigningKey::Generate();
  v1::ModelBundle installed_ = Bundle(1, /*backbone_seed=*/1);
  v1::SignedBundle next_ = Signed(Bundle(2, /*backbone_seed=*/1), key_);
  v1::SignedHead head_ = ValueOrDie(SignedHeadOf(next_), "the head of v2");
};

TEST_F(HeadReleaseTest, RebuildsTheSignedBundleFromTheInstalledBackbone) {
  const v1::SignedBundle rebuilt = ValueOrDie(RebuildSignedBundle(head_, installed_), "rebuilding v2");
  EXPECT_EQ(rebuilt.SerializeAsString(), next_.SerializeAsString());
  EXPECT_LE(head_.ByteSizeLong() + installed_.backbone().ByteSizeLong(), next_.ByteSizeLong())
      << "the backbone stays at home";
}

TEST_F(HeadReleaseTest, AnotherBackboneDoesNotRebuildIt) {
  auto rebuilt = RebuildSignedBundle(head_, Bundle(1, /*backbone_seed=*/2));
  EXPECT_EQ(rebuilt.status().code(), absl::StatusCode::kFailedPrecondition) << rebuilt.status();
}

TEST_F(HeadReleaseTest, AHeadChangedOnTheWayDoesNotRebuildIt) {
  v1::ModelBundle part;
  ASSERT_TRUE(part.ParseFromString(head_.bundle_without_backbone()));
  part.mutable_head()->set_bias(0, part.head().bias(0) + 1.0f);
  head_.set_bundle_without_backbone(part.SerializeAsString());
  EXPECT_EQ(RebuildSignedBundle(head_, installed_).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HeadReleaseTest, MalformedPartsAreRefused) {
  v1::SignedHead garbage = head_;
  garbage.set_bundle_without_backbone("\xff\xff\xff");
  EXPECT_EQ(RebuildSignedBundle(garbage, installed_).status().code(), absl::StatusCode::kInvalidArgument);

  v1::SignedHead smuggled = head_;  // a backbone of its own would bypass the installed one
  v1::ModelBundle part = installed_;
  smuggled.set_bundle_without_backbone(part.SerializeAsString());
  EXPECT_EQ(RebuildSignedBundle(smuggled, installed_).status().code(), absl::StatusCode::kInvalidArgument);

  v1::SignedHead unsigned_head = head_;
  unsigned_head.clear_release();
  EXPECT_EQ(RebuildSignedBundle(unsigned_head, installed_).status().code(), absl::StatusCode::kInvalidArgument);

  v1::SignedBundle not_a_bundle = next_;
  not_a_bundle.set_bundle("not a bundle file");
  EXPECT_EQ(SignedHeadOf(not_a_bundle).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::models
