#include "tinyfed/dp/ledger.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/testing/kill_nine.h"
#include "gtest/gtest.h"

namespace tinyfed::dp {
namespace {

std::filesystem::path FreshPath(const std::string& name) {
  const auto p = std::filesystem::path(::testing::TempDir()) / name;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + suffix);
  return p;
}

PrivacyCharge GaussianRound(int64_t round, const std::vector<double>& orders, double z = 1.5) {
  PrivacyCharge c;
  c.round = round;
  c.mechanism = "sampled_gaussian";
  c.parameters = "{\"q\": 0.1, \"z\": 1.5}";
  c.rdp = *SampledGaussianRdp(0.1, z, 1, orders);
  return c;
}

TEST(PrivacyLedger, ChargesSurviveReopeningAndRetriesDoNotDoubleCount) {
  const auto path = FreshPath("ledger1.db");
  const PrivacyBudget budget{10.0, 1e-5};
  double spent_before = 0.0;
  {
    auto ledger = PrivacyLedger::Open(path, budget);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    for (int r = 1; r <= 20; ++r) ASSERT_TRUE((*ledger)->Charge(GaussianRound(r, (*ledger)->orders())).ok());
    spent_before = (*ledger)->Spent()->epsilon;
    // The same charge again (an aggregator retrying after a crash): no-op.
    ASSERT_TRUE((*ledger)->Charge(GaussianRound(20, (*ledger)->orders())).ok());
    EXPECT_EQ((*ledger)->Spent()->epsilon, spent_before);
  }
  auto reopened = PrivacyLedger::Open(path, budget);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->Spent()->epsilon, spent_before);
  EXPECT_EQ((*reopened)->Charges()->size(), 20u);
  // And it equals the accountant's epsilon for 20 steps.
  const auto orders = DefaultOrders();
  EXPECT_NEAR(spent_before, EpsilonFromRdp(orders, *SampledGaussianRdp(0.1, 1.5, 20, orders), 1e-5)->epsilon, 1e-9);
}

TEST(PrivacyLedger, ConflictingChargeForARoundIsRefused) {
  auto ledger = PrivacyLedger::Open(FreshPath("ledger2.db"), {10.0, 1e-5});
  ASSERT_TRUE(ledger.ok());
  ASSERT_TRUE((*ledger)->Charge(GaussianRound(1, (*ledger)->orders())).ok());
  EXPECT_EQ((*ledger)->Charge(GaussianRound(1, (*ledger)->orders(), 0.7)).code(), absl::StatusCode::kAlreadyExists);
}

TEST(PrivacyLedger, BudgetRefusesTheRoundThatWouldExceedIt) {
  auto ledger = PrivacyLedger::Open(FreshPath("ledger3.db"), {1.0, 1e-5});
  ASSERT_TRUE(ledger.ok());
  int charged = 0;
  absl::Status s;
  for (int r = 1; r <= 1000 && s.ok(); ++r) {
    s = (*ledger)->Charge(GaussianRound(r, (*ledger)->orders()));
    if (s.ok()) ++charged;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("past the budget of 1"), absl::string_view::npos) << s;
  EXPECT_GT(charged, 0);
  EXPECT_EQ((*ledger)->Charges()->size(), static_cast<size_t>(charged));  // nothing recorded for the refusal
  EXPECT_LE((*ledger)->Spent()->epsilon, 1.0);
}

TEST(PrivacyLedger, BadInputIsRefused) {
  EXPECT_EQ(PrivacyLedger::Open(FreshPath("ledger4.db"), {0.0, 1e-5}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto ledger = PrivacyLedger::Open(FreshPath("ledger5.db"), {1.0, 1e-5});
  ASSERT_TRUE(ledger.ok());
  PrivacyCharge c = GaussianRound(1, (*ledger)->orders());
  c.rdp.pop_back();
  EXPECT_EQ((*ledger)->Charge(c).code(), absl::StatusCode::kInvalidArgument);
  c = GaussianRound(1, (*ledger)->orders());
  c.rdp[0] = -1.0;
  EXPECT_EQ((*ledger)->Charge(c).code(), absl::StatusCode::kInvalidArgument);
  // Reopened with other orders.
  const auto path = FreshPath("ledger6.db");
  ASSERT_TRUE(PrivacyLedger::Open(path, {1.0, 1e-5}).ok());
  EXPECT_EQ(PrivacyLedger::Open(path, {1.0, 1e-5}, {2.0, 3.0}).status().code(), absl::StatusCode::kFailedPrecondition);
  // Not a database at all.
  const auto junk = FreshPath("junk.db");
  std::ofstream(junk) << std::string(4096, 'x');
  EXPECT_EQ(PrivacyLedger::Open(junk, {1.0, 1e-5}).status().code(), absl::StatusCode::kInvalidArgument);
}

// Rounds 1..5 charged, only 1, 2 and 4 published: 3 and 5 stop counting,
// a later publication of 5 (found after a restart) counts again, and the
// voided round cannot be charged a second time.
TEST(PrivacyLedger, ReconcileCountsExactlyThePublishedRounds) {
  const auto path = FreshPath("ledger_reconcile.db");
  const PrivacyBudget budget{100.0, 1e-5};
  auto ledger = PrivacyLedger::Open(path, budget);
  ASSERT_TRUE(ledger.ok());
  for (int r = 1; r <= 5; ++r) ASSERT_TRUE((*ledger)->Charge(GaussianRound(r, (*ledger)->orders())).ok());
  const double five = (*ledger)->Spent()->epsilon;
  auto reconciled = (*ledger)->Reconcile({1, 2, 4});
  ASSERT_TRUE(reconciled.ok()) << reconciled.status();
  EXPECT_EQ(reconciled->voided, 2);
  EXPECT_EQ(reconciled->restored, 0);
  const auto orders = DefaultOrders();
  const double three = EpsilonFromRdp(orders, *SampledGaussianRdp(0.1, 1.5, 3, orders), 1e-5)->epsilon;
  EXPECT_NEAR((*ledger)->Spent()->epsilon, three, 1e-9);
  ASSERT_EQ((*ledger)->Charges()->size(), 3u);
  EXPECT_EQ((*ledger)->Charges()->at(2).round, 4);
  EXPECT_EQ((*ledger)->Charge(GaussianRound(3, (*ledger)->orders())).code(), absl::StatusCode::kFailedPrecondition);
  // Idempotent, and it survives reopening.
  EXPECT_EQ((*ledger)->Reconcile({1, 2, 4})->voided, 0);
  ledger->reset();
  auto reopened = PrivacyLedger::Open(path, budget);
  ASSERT_TRUE(reopened.ok());
  EXPECT_NEAR((*reopened)->Spent()->epsilon, three, 1e-9);
  reconciled = (*reopened)->Reconcile({1, 2, 3, 4, 5, 6});
  EXPECT_EQ(reconciled->restored, 2);
  EXPECT_EQ(reconciled->voided, 0);
  EXPECT_EQ((*reopened)->Spent()->epsilon, five);
}

// A writer killed with SIGKILL at random moments: every round is recorded
// whole or not at all, and the rounds present are a prefix 1..k.
TEST(PrivacyLedger, SurvivesKillNineMidCharge) {
  const auto path = FreshPath("ledger_kill.db");
  const PrivacyBudget budget{1e9, 1e-5};
  size_t recorded = 0;
  for (int trial = 0; trial < 10; ++trial) {
    const base::testing::KilledWriter killed =
        base::testing::KillNineAfter(1 + 3 * trial % 7, [&](const std::function<void()>& report) {
          auto ledger = PrivacyLedger::Open(path, budget);
          if (!ledger.ok()) _exit(2);
          const auto start = (*ledger)->Charges()->size();
          for (int64_t r = static_cast<int64_t>(start) + 1;; ++r) {
            if (!(*ledger)->Charge(GaussianRound(r, (*ledger)->orders())).ok()) return;
            report();
          }
        });
    ASSERT_TRUE(WIFSIGNALED(killed.wait_status)) << "the writer exited with " << WEXITSTATUS(killed.wait_status);
    recorded += static_cast<size_t>(killed.commits_reported);
    auto ledger = PrivacyLedger::Open(path, budget);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    const auto charges = (*ledger)->Charges();
    ASSERT_TRUE(charges.ok());
    for (size_t i = 0; i < charges->size(); ++i) {
      ASSERT_EQ((*charges)[i].round, static_cast<int64_t>(i + 1));
      ASSERT_EQ((*charges)[i].rdp, GaussianRound(1, (*ledger)->orders()).rdp);
    }
    // Every charge that returned OK is there; at most the one in flight more.
    EXPECT_GE(charges->size(), recorded);
    EXPECT_LE(charges->size(), recorded + 1);
    recorded = charges->size();
    const auto orders = DefaultOrders();
    const auto n = static_cast<int64_t>(charges->size());
    if (n > 0) {
      EXPECT_NEAR((*ledger)->Spent()->epsilon,
                  EpsilonFromRdp(orders, *SampledGaussianRdp(0.1, 1.5, n, orders), 1e-5)->epsilon, 1e-6);
    }
  }
  EXPECT_GT(recorded, 10u) << "the killed writers should have committed some rounds";
}

}  // namespace
}  // namespace tinyfed::dp

namespace tinyfed::dp {
namespace {

TEST(PrivacyLedger, CountsThePldAccountantWhileEveryChargeIsASampledGaussian) {
  const auto path = FreshPath("ledger-pld.db");
  const PrivacyBudget budget{50.0, 1e-5};
  const SampledGaussianSteps steps{0.1, 1.5, 20};
  auto charge = [&](int64_t round, bool with_steps) {
    PrivacyCharge c = GaussianRound(round, DefaultOrders());
    c.rdp = *SampledGaussianRdp(steps.sampling_rate, steps.noise_multiplier, steps.steps, DefaultOrders());
    if (with_steps) c.pld = {steps};
    return c;
  };
  const SampledGaussianSteps three{0.1, 1.5, 60};
  {
    auto ledger = PrivacyLedger::Open(path, budget);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    for (int r = 1; r <= 3; ++r) ASSERT_TRUE((*ledger)->Charge(charge(r, true)).ok());
    auto spent = (*ledger)->Spent();
    ASSERT_TRUE(spent.ok());
    EXPECT_STREQ(spent->accountant, "pld");
    EXPECT_DOUBLE_EQ(spent->epsilon, *PldEpsilon({&three, 1}, 1e-5));
    const auto orders = DefaultOrders();
    const auto rdp = *SampledGaussianRdp(0.1, 1.5, 60, orders);
    EXPECT_LT(spent->epsilon, EpsilonFromRdp(orders, rdp, 1e-5)->epsilon);
  }
  auto ledger = PrivacyLedger::Open(path, budget);  // the steps are kept
  ASSERT_TRUE(ledger.ok());
  EXPECT_DOUBLE_EQ((*ledger)->Spent()->epsilon, *PldEpsilon({&three, 1}, 1e-5));
  ASSERT_EQ((*ledger)->Charges()->at(1).pld.size(), 1u);
  // One charge only RDP accounts for: the whole total is RDP's.
  ASSERT_TRUE((*ledger)->Charge(charge(4, false)).ok());
  EXPECT_STREQ((*ledger)->Spent()->accountant, "rdp");
}

}  // namespace
}  // namespace tinyfed::dp
