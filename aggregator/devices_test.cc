#include "tinyfed/aggregator/devices.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tinyfed/client/transport.h"

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
  std::atomic<bool> done{false};
  std::atomic<int> issued{0};
  std::thread issuer([&] {
    // As fast as an operator's script could, not a tight loop (which would
    // starve any other writer, immediate or not).
    while (!done.load()) {
      if ((*cli)->IssueToken(std::nullopt, absl::Hours(1)).ok()) ++issued;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  int enrolled = 0;
  std::string failure;
  for (int i = 0; i < kDevices; ++i) {
    const models::SigningKey key = models::SigningKey::Generate();
    const absl::Status s =
        (*server)->Enroll(client::SignedEnrollRequest("clinic-" + std::to_string(i), tokens[i], key));
    if (s.ok()) {
      ++enrolled;
    } else if (failure.empty()) {
      failure = s.ToString();
    }
  }
  done.store(true);
  issuer.join();
  EXPECT_EQ(enrolled, kDevices) << failure;
  EXPECT_GT(issued.load(), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tinyfed::aggregator
