#include "client/internal/retry.h"

#include <gtest/gtest.h>

#include <vector>

namespace tinyfed::client::internal {
namespace {

// Attempts fail with `failures` in turn, then succeed; sleeps are recorded.
struct Scripted {
  explicit Scripted(std::vector<absl::Status> f) : failures(std::move(f)) {}
  std::vector<absl::Status> failures;
  int attempts = 0;
  std::vector<absl::Duration> sleeps;

  absl::Status Run(const RetryPolicy& policy, double jitter = 0.5) {
    return RetryWithBackoff(
        policy,
        [&] {
          const size_t n = static_cast<size_t>(attempts++);
          return n < failures.size() ? failures[n] : absl::OkStatus();
        },
        [jitter] { return jitter; }, [&](absl::Duration d) { sleeps.push_back(d); });
  }
};

TEST(RetryTest, ALostLinkIsRetriedWithGrowingJitteredBackoff) {
  Scripted s({absl::UnavailableError("down"), absl::DeadlineExceededError("slow"), absl::UnavailableError("down")});
  RetryPolicy policy;  // 200 ms, doubling
  EXPECT_TRUE(s.Run(policy).ok());
  EXPECT_EQ(s.attempts, 4);
  // Full jitter at 0.5: half of 200, 400 and 800 ms.
  EXPECT_EQ(s.sleeps,
            (std::vector<absl::Duration>{absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400)}));
}

TEST(RetryTest, AnAnswerAboutTheRequestIsNotRetried) {
  for (const absl::Status& refusal : {absl::InvalidArgumentError("bad"), absl::FailedPreconditionError("late"),
                                      absl::UnauthenticatedError("who"), absl::ResourceExhaustedError("slow down")}) {
    Scripted s({refusal});
    EXPECT_EQ(s.Run(RetryPolicy()), refusal);
    EXPECT_EQ(s.attempts, 1);
    EXPECT_TRUE(s.sleeps.empty());
  }
}

TEST(RetryTest, GivesUpAfterMaxAttemptsWithTheLastError) {
  Scripted s(std::vector<absl::Status>(10, absl::UnavailableError("down")));
  s.failures.back() = absl::UnavailableError("still down");
  RetryPolicy policy;
  policy.max_attempts = 4;
  const absl::Status last = s.Run(policy);
  EXPECT_TRUE(absl::IsUnavailable(last));
  EXPECT_EQ(s.attempts, 4);
  EXPECT_EQ(s.sleeps.size(), 3u);  // none after the last attempt
}

TEST(RetryTest, TheBackoffStopsGrowingAtItsMaximum) {
  Scripted s(std::vector<absl::Status>(7, absl::UnavailableError("down")));
  RetryPolicy policy;
  policy.max_attempts = 8;
  policy.initial_backoff = absl::Seconds(1);
  policy.max_backoff = absl::Seconds(5);
  policy.multiplier = 3.0;
  EXPECT_TRUE(s.Run(policy, /*jitter=*/0.999).ok());
  ASSERT_EQ(s.sleeps.size(), 7u);
  // 1, 3, then 5 s (capped) for the rest, each just under its backoff.
  const std::vector<double> backoffs = {1, 3, 5, 5, 5, 5, 5};
  for (size_t i = 0; i < backoffs.size(); ++i) {
    EXPECT_NEAR(absl::ToDoubleSeconds(s.sleeps[i]), 0.999 * backoffs[i], 1e-9) << i;
  }
}

TEST(RetryTest, ZeroJitterRetriesAtOnce) {
  Scripted s({absl::UnavailableError("down")});
  EXPECT_TRUE(s.Run(RetryPolicy(), /*jitter=*/0.0).ok());
  EXPECT_EQ(s.sleeps, std::vector<absl::Duration>{absl::ZeroDuration()});
}

}  // namespace
}  // namespace tinyfed::client::internal
