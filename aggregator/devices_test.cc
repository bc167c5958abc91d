#include "tinyfed/aggregator/devices.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "tinyfed/auth/device_signature.h"

namespace tinyfed::aggregator {
namespace {

// A gateway enrolling while `tinyfed enroll` (another connection, as another
// process) writes tokens used to get "database is locked": enrollment read
// and then wrote in a deferred transaction, whose snapshot the other
// writer made stale.
TEST(DeviceRegistry, EnrollmentsSucceedWhileTokensAreIssuedElsewhere) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("tinyfed-devices-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  auto server = DeviceRegistry::Open(dir);
  auto cli = DeviceRegistry::Open(dir);
  ASSERT_TRUE(server.ok() && cli.ok());
  constexpr int kDevices = 300;
  std::vector<std::string> tokens;
  for (int i = 0; i < kDevices; ++i)
    tokens.push_back(*(*cli)->IssueToken("clinic-" + std::to_string(i), absl::Hours(1)));
  // The operator's script issues a token each time a gateway has tried to
  // enroll: paced by the enrollments rather than the clock, so that neither
  // writer starves the other, and each issue races the next enrollment.
  absl::Mutex mu;
  bool done = false;
  int attempts = 0;
  std::atomic<int> issued{0};
  std::thread issuer([&] {
    for (int seen = 0;;) {
      {
        absl::MutexLock lock(&mu);
        const auto moved = [&] { return done || attempts > seen; };
        mu.Await(absl::Condition(&moved));
        if (done) return;
        seen = attempts;
      }
      if ((*cli)->IssueToken(std::nullopt, absl::Hours(1)).ok()) ++issued;
    }
  });
  int enrolled = 0;
  std::string failure;
  for (int i = 0; i < kDevices; ++i) {
    const models::SigningKey key = models::SigningKey::Generate();
    const absl::Status s = (*server)->Enroll(auth::SignedEnrollRequest("clinic-" + std::to_string(i), tokens[i], key));
    if (s.ok()) {
      ++enrolled;
    } else if (failure.empty()) {
      failure = s.ToString();
    }
    absl::MutexLock lock(&mu);
    ++attempts;
  }
  {
    absl::MutexLock lock(&mu);
    done = true;
  }
  issuer.join();
  EXPECT_EQ(enrolled, kDevices) << failure;
  EXPECT_GT(issued.load(), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tinyfed::aggregator
