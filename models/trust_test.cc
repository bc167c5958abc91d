// One test per attack of TUF's list, each against TrustedRoot::VerifyModel or
// TrustedRoot::Advance (models/trust.h).
#include "tinyfed/models/trust.h"

#include <random>
#include <vector>

#include "base/testing/value_or_die.h"
#include "gtest/gtest.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::models {
namespace {

using absl::StatusCode;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
constexpr int64_t kDay = 86400;

class TrustTest : public ::testing::Test {
 protected:
  TrustTest() {
    for (int i = 0; i < 3; ++i) root_keys_.push_back(SigningKey::Generate());
    root_ = RootFor(1, {&root_keys_[0], &root_keys_[1], &root_keys_[2]}, 2, {&publishing_});
  }

  static v1::KeyRole Role(std::vector<const SigningKey*> keys, uint32_t threshold) {
    v1::KeyRole role;
    for (const SigningKey* k : keys) role.add_public_keys(KeyBytes(k->public_key()));
    role.set_threshold(threshold);
    return role;
  }

  v1::RootMetadata RootFor(uint64_t version, std::vector<const SigningKey*> root_keys, uint32_t threshold,
                           std::vector<const SigningKey*> publishing) {
    v1::RootMetadata r;
    r.set_version(version);
    r.set_federation("clinics-north/fmnist");
    r.set_expires_unix_seconds(absl::ToUnixSeconds(kNow) + 365 * kDay);
    *r.mutable_root() = Role(root_keys, threshold);
    *r.mutable_publishing() = Role(publishing, 1);
    return r;
  }

  // Bundle files of one backbone (or another, with `backbone_seed`) whose
  // heads differ per version.
  static std::string BundleFile(uint64_t version, int backbone_seed = 1) {
    std::mt19937 rng(backbone_seed);
    v1::ModelBundle b = testing::RandomSingleOpBundle(v1::Op::kConv2D, testing::ConvSpec{}, rng);
    b.mutable_metadata()->set_version(version);
    for (float& w : *b.mutable_head()->mutable_weights()) w += 0.01f * static_cast<float>(version);
    return EncodeBundleFile(b);
  }

  v1::SignedBundle Publish(uint64_t model_version, uint64_t release_version, const SigningKey& key,
                           const std::string& federation = "clinics-north/fmnist", int64_t expires_in = 7 * kDay) {
    v1::SignedBundle out;
    out.set_bundle(BundleFile(model_version));
    v1::ReleaseMetadata release =
        base::testing::ValueOrDie(DescribeRelease(out.bundle(), federation), "describing the release");
    release.set_version(release_version);
    release.set_expires_unix_seconds(absl::ToUnixSeconds(kNow) + expires_in);
    const SigningKey* k = &key;
    *out.mutable_release() = SignRelease(release, {&k, 1});
    return out;
  }

  TrustedRoot Pinned() {
    std::vector<const SigningKey*> signers{&root_keys_[0], &root_keys_[1]};
    return base::testing::ValueOrDie(TrustedRoot::Pin(SignRoot(root_, signers)), "pinning the root");
  }

  StatusCode Verify(const TrustedRoot& trusted, const v1::SignedBundle& b,
                    const v1::ReleaseMetadata* installed = nullptr, absl::Time now = kNow) {
    auto verified = trusted.VerifyModel(b, installed, now);
    if (!verified.ok()) message_ = std::string(verified.status().message());
    return verified.status().code();
  }

  std::vector<SigningKey> root_keys_;
  SigningKey publishing_ = SigningKey::Generate();
  v1::RootMetadata root_;
  std::string message_;
};

TEST_F(TrustTest, AGenuineReleaseVerifiesAndDecodes) {
  const TrustedRoot trusted = Pinned();
  auto verified = trusted.VerifyModel(Publish(3, 3, publishing_), nullptr, kNow);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->release.model_version(), 3u);
  EXPECT_EQ(verified->bundle.metadata().version(), 3u);
}

TEST_F(TrustTest, ArbitraryModelsAreRefused) {
  const TrustedRoot trusted = Pinned();
  v1::SignedBundle unsigned_bundle = Publish(2, 2, publishing_);
  unsigned_bundle.mutable_release()->clear_signatures();
  EXPECT_EQ(Verify(trusted, unsigned_bundle), StatusCode::kPermissionDenied);
  EXPECT_NE(message_.find("0 valid signature(s) of the 1 required"), std::string::npos) << message_;
  const SigningKey stranger = SigningKey::Generate();
  EXPECT_EQ(Verify(trusted, Publish(2, 2, stranger)), StatusCode::kPermissionDenied);
  // A root key is not a publishing key: roles do not mix.
  EXPECT_EQ(Verify(trusted, Publish(2, 2, root_keys_[0])), StatusCode::kPermissionDenied);
  v1::SignedBundle bad_signature = Publish(2, 2, publishing_);
  (*bad_signature.mutable_release()->mutable_signatures(0)->mutable_signature())[5] ^= 1;
  EXPECT_EQ(Verify(trusted, bad_signature), StatusCode::kPermissionDenied);
  v1::SignedBundle tampered = Publish(2, 2, publishing_);
  tampered.mutable_bundle()->back() ^= 1;
  EXPECT_EQ(Verify(trusted, tampered), StatusCode::kPermissionDenied);
  v1::SignedBundle garbage_metadata = Publish(2, 2, publishing_);
  garbage_metadata.mutable_release()->set_payload("\xff\xff\xff");
  EXPECT_EQ(Verify(trusted, garbage_metadata), StatusCode::kPermissionDenied);
}

TEST_F(TrustTest, RollbackIsRefused) {
  const TrustedRoot trusted = Pinned();
  auto installed = trusted.VerifyModel(Publish(5, 5, publishing_), nullptr, kNow);
  ASSERT_TRUE(installed.ok());
  EXPECT_EQ(Verify(trusted, Publish(4, 4, publishing_), &installed->release), StatusCode::kFailedPrecondition);
  EXPECT_NE(message_.find("rollback"), std::string::npos) << message_;
  EXPECT_EQ(Verify(trusted, Publish(5, 5, publishing_), &installed->release), StatusCode::kFailedPrecondition);
  // A newer model under older metadata: a release rolled back.
  EXPECT_EQ(Verify(trusted, Publish(6, 4, publishing_), &installed->release), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Verify(trusted, Publish(6, 6, publishing_), &installed->release), StatusCode::kOk);
}

TEST_F(TrustTest, FastForwardToAnUnsignedVersionIsRefused) {
  const TrustedRoot trusted = Pinned();
  v1::SignedBundle forged = Publish(2, 2, publishing_);
  v1::ReleaseMetadata release;
  ASSERT_TRUE(release.ParseFromString(forged.release().payload()));
  release.set_model_version(1'000'000);
  release.set_version(1'000'000);
  forged.mutable_release()->set_payload(release.SerializeAsString());
  EXPECT_EQ(Verify(trusted, forged), StatusCode::kPermissionDenied);
}

TEST_F(TrustTest, FastForwardByARetiredPublishingKeyIsRefusedAfterRotation) {
  TrustedRoot trusted = Pinned();
  // The online key leaks; the operator rotates it with the offline root keys.
  const SigningKey replacement = SigningKey::Generate();
  const v1::RootMetadata v2 = RootFor(2, {&root_keys_[0], &root_keys_[1], &root_keys_[2]}, 2, {&replacement});
  std::vector<const SigningKey*> signers{&root_keys_[1], &root_keys_[2]};
  ASSERT_TRUE(trusted.Advance(SignRoot(v2, signers)).ok());
  EXPECT_EQ(Verify(trusted, Publish(1'000'000, 1'000'000, publishing_)), StatusCode::kPermissionDenied);
  EXPECT_EQ(Verify(trusted, Publish(2, 2, replacement)), StatusCode::kOk);
}

TEST_F(TrustTest, IndefiniteFreezeIsRefused) {
  const TrustedRoot trusted = Pinned();
  const v1::SignedBundle stale = Publish(2, 2, publishing_, "clinics-north/fmnist", kDay);
  EXPECT_EQ(Verify(trusted, stale, nullptr, kNow + absl::Hours(23)), StatusCode::kOk);
  EXPECT_EQ(Verify(trusted, stale, nullptr, kNow + absl::Hours(25)), StatusCode::kFailedPrecondition);
  EXPECT_NE(message_.find("expired"), std::string::npos) << message_;
  // An expired root freezes everything until a fresh root arrives.
  EXPECT_EQ(Verify(trusted, Publish(2, 2, publishing_, "clinics-north/fmnist", 400 * kDay), nullptr,
                   kNow + absl::Hours(24 * 366)),
            StatusCode::kFailedPrecondition);
  EXPECT_NE(message_.find("trusted root v1 expired"), std::string::npos) << message_;
  // Re-verifying an installed model after a restart ignores expiry.
  EXPECT_TRUE(trusted.VerifyModel(stale, nullptr, std::nullopt).ok());
}

TEST_F(TrustTest, EndlessDataIsRefused) {
  const TrustedRoot trusted = Pinned();
  v1::SignedBundle longer = Publish(2, 2, publishing_);
  longer.mutable_bundle()->append(1 << 20, '\0');
  EXPECT_EQ(Verify(trusted, longer), StatusCode::kDataLoss);
  EXPECT_NE(message_.find("the release signs"), std::string::npos) << message_;
  v1::SignedBundle shorter = Publish(2, 2, publishing_);
  shorter.mutable_bundle()->resize(shorter.bundle().size() / 2);
  EXPECT_EQ(Verify(trusted, shorter), StatusCode::kDataLoss);
}

TEST_F(TrustTest, MixAndMatchIsRefused) {
  const TrustedRoot trusted = Pinned();
  // v3's release with v2's bundle.
  v1::SignedBundle mixed = Publish(3, 3, publishing_);
  mixed.set_bundle(Publish(2, 2, publishing_).bundle());
  EXPECT_NE(Verify(trusted, mixed), StatusCode::kOk);
  // v3's head on another backbone.
  auto other = DecodeBundleFile(BundleFile(3, /*backbone_seed=*/2));
  auto genuine = DecodeBundleFile(Publish(3, 3, publishing_).bundle());
  ASSERT_TRUE(other.ok() && genuine.ok());
  *other->mutable_head() = genuine->head();
  v1::SignedBundle spliced = Publish(3, 3, publishing_);
  spliced.set_bundle(EncodeBundleFile(*other));
  EXPECT_NE(Verify(trusted, spliced), StatusCode::kOk);
  // Even with the whole file's length and hash signed, the parts are bound
  // separately.
  v1::ReleaseMetadata release;
  ASSERT_TRUE(release.ParseFromString(spliced.release().payload()));
  release.set_bundle_sha256(base::Sha256(spliced.bundle()));
  release.set_bundle_length(spliced.bundle().size());
  const SigningKey* k = &publishing_;
  *spliced.mutable_release() = SignRelease(release, {&k, 1});
  EXPECT_EQ(Verify(trusted, spliced), StatusCode::kPermissionDenied);
  EXPECT_NE(message_.find("backbone or head"), std::string::npos) << message_;
}

TEST_F(TrustTest, WrongModelIsRefused) {
  const TrustedRoot trusted = Pinned();
  // The same publishing key serves another federation: its releases do not
  // pass for this one's.
  EXPECT_EQ(Verify(trusted, Publish(2, 2, publishing_, "clinics-south/breast-cancer")),
            StatusCode::kFailedPrecondition);
  EXPECT_NE(message_.find("clinics-south/breast-cancer"), std::string::npos) << message_;
  // A bundle that calls itself another version than its release.
  v1::SignedBundle relabelled;
  relabelled.set_bundle(BundleFile(7));
  auto release = DescribeRelease(relabelled.bundle(), "clinics-north/fmnist");
  ASSERT_TRUE(release.ok());
  release->set_model_version(8);
  release->set_version(8);
  release->set_expires_unix_seconds(absl::ToUnixSeconds(kNow) + kDay);
  const SigningKey* k = &publishing_;
  *relabelled.mutable_release() = SignRelease(*release, {&k, 1});
  EXPECT_EQ(Verify(trusted, relabelled), StatusCode::kPermissionDenied);
}

TEST_F(TrustTest, ACompromisedRootKeyBelowTheThresholdCannotTakeOver) {
  TrustedRoot trusted = Pinned();
  const SigningKey attacker = SigningKey::Generate();
  // One of the three root keys (threshold 2) signs a root that hands
  // publishing to the attacker, and a root the attacker fully controls.
  const v1::RootMetadata evil = RootFor(2, {&root_keys_[0], &attacker}, 1, {&attacker});
  std::vector<const SigningKey*> signers{&root_keys_[0], &attacker};
  const absl::Status s = trusted.Advance(SignRoot(evil, signers));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("1 valid signature(s) of the 2 required"), std::string::npos) << s;
  EXPECT_EQ(trusted.root().version(), 1u);
  EXPECT_EQ(Verify(trusted, Publish(2, 2, attacker)), StatusCode::kPermissionDenied);
  // The same signature listed twice counts once.
  v1::SignedMetadata doubled = SignRoot(evil, signers);
  *doubled.add_signatures() = doubled.signatures(0);
  EXPECT_EQ(trusted.Advance(doubled).code(), StatusCode::kPermissionDenied);
  // A pinned root must meet its own threshold too.
  std::vector<const SigningKey*> one{&root_keys_[0]};
  EXPECT_EQ(TrustedRoot::Pin(SignRoot(root_, one)).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(TrustTest, RootRotationNeedsBothThresholdsAndTheNextVersion) {
  TrustedRoot trusted = Pinned();
  const SigningKey n1 = SigningKey::Generate(), n2 = SigningKey::Generate();
  // v2: root keys {0, n1, n2}, threshold 2; the old keys 1 and 2 retire.
  const v1::RootMetadata v2 = RootFor(2, {&root_keys_[0], &n1, &n2}, 2, {&publishing_});
  std::vector<const SigningKey*> only_old{&root_keys_[1], &root_keys_[2]};
  EXPECT_EQ(trusted.Advance(SignRoot(v2, only_old)).code(), StatusCode::kPermissionDenied);
  std::vector<const SigningKey*> only_new{&n1, &n2};
  EXPECT_EQ(trusted.Advance(SignRoot(v2, only_new)).code(), StatusCode::kPermissionDenied);
  v1::RootMetadata skipping = v2;
  skipping.set_version(3);
  std::vector<const SigningKey*> both{&root_keys_[1], &root_keys_[2], &n1, &n2};
  EXPECT_EQ(trusted.Advance(SignRoot(skipping, both)).code(), StatusCode::kFailedPrecondition);
  v1::RootMetadata elsewhere = v2;
  elsewhere.set_federation("clinics-south/breast-cancer");
  EXPECT_EQ(trusted.Advance(SignRoot(elsewhere, both)).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(trusted.Advance(SignRoot(v2, both)).ok());
  EXPECT_EQ(trusted.root().version(), 2u);
  // v3 is signed by v2's keys; the retired keys 1 and 2 no longer count.
  const v1::RootMetadata v3 = RootFor(3, {&root_keys_[0], &n1, &n2}, 2, {&publishing_});
  EXPECT_EQ(trusted.Advance(SignRoot(v3, only_old)).code(), StatusCode::kPermissionDenied);
  std::vector<const SigningKey*> current{&root_keys_[0], &n2};
  EXPECT_TRUE(trusted.Advance(SignRoot(v3, current)).ok());
  EXPECT_EQ(Verify(trusted, Publish(2, 2, publishing_)), StatusCode::kOk);
}

TEST_F(TrustTest, MalformedRootsAreRefusedWithTheReason) {
  auto refuse = [](v1::RootMetadata r) {
    v1::SignedMetadata m;
    m.set_payload(r.SerializeAsString());
    return std::string(ParseRoot(m).status().message());
  };
  v1::RootMetadata r = root_;
  r.mutable_root()->set_threshold(4);
  EXPECT_EQ(refuse(r), "the root threshold 4 is not in 1..3");
  r = root_;
  r.mutable_publishing()->clear_public_keys();
  EXPECT_EQ(refuse(r), "the publishing role lists 0 keys; 1 to 32 are allowed");
  r = root_;
  r.mutable_root()->set_public_keys(1, r.root().public_keys(0));
  EXPECT_EQ(refuse(r), "the root role repeats a key");
  r = root_;
  r.clear_federation();
  EXPECT_EQ(refuse(r), "root metadata names no federation");
}

}  // namespace
}  // namespace tinyfed::models
