#include "aggregator/internal/authenticator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "tinyfed/auth/device_signature.h"
#include "tinyfed/proto/authentication.h"

namespace tinyfed::aggregator::internal {
namespace {

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / ("tinyfed-auth-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    auto devices = DeviceRegistry::Open(dir_);
    ASSERT_TRUE(devices.ok()) << devices.status();
    devices_ = std::move(*devices);
    auto token = devices_->IssueToken("clinic-1", absl::Hours(1));
    ASSERT_TRUE(token.ok());
    ASSERT_TRUE(devices_->Enroll(auth::SignedEnrollRequest("clinic-1", *token, key_)).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A fresh check-in signed by clinic-1 at `now`.
  absl::Status Call(Authenticator& auth, absl::Time now) {
    v1::CheckInRequest r;
    r.mutable_header()->set_device_id("clinic-1");
    r.mutable_header()->set_phase(v1::PHASE_CHECK_IN);
    auth::StampHeader(r.mutable_header(), now);
    const std::string bytes = r.SerializeAsString();
    const std::string method = "/tinyfed.v1.Aggregator/CheckIn";
    const std::string signature = auth::SignRequest(method, bytes, key_);
    return auth.Authenticate(method, bytes, r.header(), signature, now);
  }

  std::filesystem::path dir_;
  std::unique_ptr<DeviceRegistry> devices_;
  models::SigningKey key_ = models::SigningKey::Generate();
};

// 30,000 signed calls over the rate used to grow memory by 3.4 MB: each
// stored its nonce before the rate refused it.
TEST_F(AuthenticatorTest, CallsOverTheRateCostNoMemory) {
  SecurityConfig security;
  security.requests_per_minute = 10;
  Authenticator auth(devices_.get(), security);
  const absl::Time now = absl::Now();
  int ok = 0, exhausted = 0;
  for (int i = 0; i < 3000; ++i) {
    const absl::Status s = Call(auth, now);
    ok += s.ok();
    exhausted += s.code() == absl::StatusCode::kResourceExhausted;
  }
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(exhausted, 2990);
  EXPECT_EQ(auth.nonces_held("clinic-1"), 10u);
}

// Nonces older than twice the skew window are forgotten: the cache holds at
// most the accepted requests of that window.
TEST_F(AuthenticatorTest, NoncesAreForgottenOnceTheirTimestampCouldNotPass) {
  SecurityConfig security;
  security.requests_per_minute = 60;
  security.max_clock_skew = absl::Minutes(1);
  Authenticator auth(devices_.get(), security);
  absl::Time now = absl::Now();
  for (int minute = 0; minute < 10; ++minute) {
    for (int i = 0; i < 60; ++i) {
      ASSERT_TRUE(Call(auth, now).ok()) << "minute " << minute << " call " << i;
      now += absl::Seconds(1);
    }
  }
  EXPECT_LE(auth.nonces_held("clinic-1"), 2u * 60u + 1u);
}

}  // namespace
}  // namespace tinyfed::aggregator::internal
