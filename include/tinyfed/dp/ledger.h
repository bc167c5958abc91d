// The privacy ledger: an append-only record of every privacy charge, kept in
// SQLite (WAL, synchronous=FULL), and the budget that refuses a charge that
// would take epsilon past the configured limit.
//
// Epsilon is the RDP accountant's, or the PLD accountant's where every
// counted charge is a Poisson-subsampled Gaussian (the smaller of the two).
//
// A charge is keyed by its round: charging the same round again with the
// same content is a no-op (a restarted aggregator may retry), with different
// content ALREADY_EXISTS. Each charge is one transaction, so a crash leaves
// it recorded whole or not at all; a restart never loses or double-counts it.
//
// A charge counts only while its round's model is published: the charge is
// recorded before publishing (so nothing derived from a sum leaves uncharged)
// and, when publishing fails or the process dies first, Reconcile voids it
// with a compensating record (the charge row itself is never deleted, so the
// file keeps the whole history).
//
// Thread-safe: one ledger object may be used from several threads. Two
// processes must not open the same file for writing (SQLite serializes them,
// but the budget check assumes one writer).
#ifndef TINYFED_DP_LEDGER_H_
#define TINYFED_DP_LEDGER_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tinyfed/dp/pld_accountant.h"
#include "tinyfed/dp/rdp_accountant.h"

struct sqlite3;

namespace tinyfed::dp {

struct PrivacyBudget {
  double epsilon = 0.0;  // > 0
  double delta = 0.0;    // in (0, 1)
};

struct PrivacyCharge {
  int64_t round = 0;
  std::string mechanism;    // e.g. "distributed_discrete_gaussian", "sampled_gaussian"
  std::string parameters;   // the mechanism's parameters, as the caller records them (JSON)
  std::vector<double> rdp;  // at the ledger's orders
  // The same charge as Poisson-subsampled Gaussian steps, when it is one;
  // empty otherwise. While every counted charge has them, epsilon is the
  // smaller of the RDP and the PLD accountant's (both are upper bounds).
  std::vector<SampledGaussianSteps> pld;
};

class PrivacyLedger {
 public:
  // Creates the ledger file if missing. The orders are fixed when the file
  // is created; reopening with other orders is FAILED_PRECONDITION. A file
  // that is not a ledger is INVALID_ARGUMENT.
  static absl::StatusOr<std::unique_ptr<PrivacyLedger>> Open(const std::filesystem::path& path,
                                                             const PrivacyBudget& budget,
                                                             const std::vector<double>& orders = DefaultOrders());
  ~PrivacyLedger();
  PrivacyLedger(const PrivacyLedger&) = delete;
  PrivacyLedger& operator=(const PrivacyLedger&) = delete;

  const std::vector<double>& orders() const { return orders_; }

  // Records the charge unless the budget would be exceeded
  // (RESOURCE_EXHAUSTED, nothing recorded). INVALID_ARGUMENT for an RDP
  // vector of the wrong length or a negative value.
  absl::Status Charge(const PrivacyCharge& charge);
  // The epsilon that recording `charge` would bring the total to.
  absl::StatusOr<PrivacySpent> SpentAfter(const PrivacyCharge& charge) const;
  absl::StatusOr<PrivacySpent> Spent() const;
  // The charges that count (not voided), by round.
  absl::StatusOr<std::vector<PrivacyCharge>> Charges() const;

  struct Reconciled {
    int voided = 0;    // charges of rounds that published nothing
    int restored = 0;  // voided charges of rounds that did publish after all
  };
  // Makes the charges that count exactly those of `published_rounds` (the
  // rounds whose model is published), in one transaction. A published round
  // without a charge is not the ledger's to fix and is left as it is.
  absl::StatusOr<Reconciled> Reconcile(const std::vector<int64_t>& published_rounds);

 private:
  PrivacyLedger(sqlite3* db, PrivacyBudget budget, std::vector<double> orders);
  absl::StatusOr<std::vector<double>> TotalRdpLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RDP and, where every charge allows it, PLD, with `extra` (if any) added.
  absl::StatusOr<PrivacySpent> SpentLocked(const PrivacyCharge* extra) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<PrivacyCharge>> ChargesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  const PrivacyBudget budget_;
  const std::vector<double> orders_;
};

}  // namespace tinyfed::dp

#endif  // TINYFED_DP_LEDGER_H_
