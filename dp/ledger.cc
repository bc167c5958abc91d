#include "tinyfed/dp/ledger.h"

#include <sqlite3.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tinyfed::dp {
namespace {

std::string Blob(const std::vector<double>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
}

std::vector<double> FromBlob(const void* data, int bytes) {
  std::vector<double> v(static_cast<size_t>(bytes) / sizeof(double));
  std::memcpy(v.data(), data, v.size() * sizeof(double));
  return v;
}

absl::Status SqlError(sqlite3* db, std::string_view what) {
  return absl::InternalError(absl::StrCat("privacy ledger: ", std::string(what), ": ", sqlite3_errmsg(db)));
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = absl::InternalError(absl::StrCat("privacy ledger: ", sql, ": ", err ? err : "?"));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() { return stmt_; }
  bool ok() const { return stmt_ != nullptr; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

PrivacyLedger::PrivacyLedger(sqlite3* db, PrivacyBudget budget, std::vector<double> orders)
    : db_(db), budget_(budget), orders_(std::move(orders)) {}

PrivacyLedger::~PrivacyLedger() {
  absl::MutexLock lock(&mu_);
  sqlite3_close_v2(db_);
}

absl::StatusOr<std::unique_ptr<PrivacyLedger>> PrivacyLedger::Open(const std::filesystem::path& path,
                                                                   const PrivacyBudget& budget,
                                                                   const std::vector<double>& orders) {
  if (!(budget.epsilon > 0.0) || !(budget.delta > 0.0 && budget.delta < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("privacy budget needs epsilon > 0 and delta in (0, 1), got ",
                                                   budget.epsilon, " and ", budget.delta));
  }
  if (orders.empty()) return absl::InvalidArgumentError("privacy ledger needs at least one RDP order");
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    absl::Status s = absl::InternalError(
        absl::StrCat("cannot open privacy ledger ", path.string(), ": ", db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close_v2(db);
    return s;
  }
  auto close_with = [&](absl::Status s) {
    sqlite3_close_v2(db);
    return absl::Status(s.code(), absl::StrCat(path.string(), ": ", s.message()));
  };
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                          "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
                          "CREATE TABLE IF NOT EXISTS charges (round INTEGER PRIMARY KEY, mechanism TEXT NOT NULL, "
                          "parameters TEXT NOT NULL, rdp BLOB NOT NULL)",
                          "CREATE TABLE IF NOT EXISTS voids (round INTEGER PRIMARY KEY REFERENCES charges(round))",
                          "CREATE TABLE IF NOT EXISTS pld_steps (round INTEGER NOT NULL REFERENCES charges(round), "
                          "sampling_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, steps INTEGER NOT NULL)"}) {
    if (auto s = Exec(db, sql); !s.ok()) {
      const bool not_db = sqlite3_errcode(db) == SQLITE_NOTADB;
      return close_with(not_db ? absl::InvalidArgumentError("not a privacy ledger (not an SQLite database)") : s);
    }
  }
  // The orders are part of the ledger: RDP vectors only add at equal orders.
  {
    Statement insert(db, "INSERT OR IGNORE INTO ledger_meta (key, value) VALUES ('orders', ?)");
    const std::string blob = Blob(orders);
    sqlite3_bind_blob(insert.get(), 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    if (!insert.ok() || sqlite3_step(insert.get()) != SQLITE_DONE) return close_with(SqlError(db, "store orders"));
    Statement read(db, "SELECT value FROM ledger_meta WHERE key = 'orders'");
    if (!read.ok() || sqlite3_step(read.get()) != SQLITE_ROW) return close_with(SqlError(db, "read orders"));
    const auto stored = FromBlob(sqlite3_column_blob(read.get(), 0), sqlite3_column_bytes(read.get(), 0));
    if (stored != orders) {
      return close_with(absl::FailedPreconditionError(absl::StrCat(
          "ledger was created with ", stored.size(), " RDP orders that differ from the ", orders.size(), " given")));
    }
  }
  return std::unique_ptr<PrivacyLedger>(new PrivacyLedger(db, budget, orders));
}

absl::StatusOr<std::vector<double>> PrivacyLedger::TotalRdpLocked() const {
  std::vector<double> total(orders_.size(), 0.0);
  Statement q(db_, "SELECT rdp FROM charges WHERE round NOT IN (SELECT round FROM voids)");
  if (!q.ok()) return SqlError(db_, "read charges");
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    const auto rdp = FromBlob(sqlite3_column_blob(q.get(), 0), sqlite3_column_bytes(q.get(), 0));
    if (rdp.size() != total.size()) return absl::DataLossError("privacy ledger holds a charge of the wrong length");
    for (size_t i = 0; i < total.size(); ++i) total[i] += rdp[i];
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "read charges");
  return total;
}

absl::StatusOr<PrivacySpent> PrivacyLedger::SpentLocked(const PrivacyCharge* extra) const {
  auto total = TotalRdpLocked();
  if (!total.ok()) return total.status();
  if (extra) {
    for (size_t i = 0; i < total->size(); ++i) (*total)[i] += extra->rdp[i];
  }
  auto rdp = EpsilonFromRdp(orders_, *total, budget_.delta);
  if (!rdp.ok()) return rdp.status();
  auto charges = ChargesLocked();
  if (!charges.ok()) return charges.status();
  if (extra) charges->push_back(*extra);
  std::vector<SampledGaussianSteps> steps;
  for (const PrivacyCharge& c : *charges) {
    if (c.pld.empty()) return rdp;  // a mechanism only RDP accounts for
    steps.insert(steps.end(), c.pld.begin(), c.pld.end());
  }
  if (steps.empty()) return rdp;
  auto pld = PldEpsilon(steps, budget_.delta);
  if (!pld.ok()) return pld.status();
  if (*pld >= rdp->epsilon) return rdp;
  return PrivacySpent{.epsilon = *pld, .order = 0.0, .accountant = "pld"};
}

absl::StatusOr<PrivacySpent> PrivacyLedger::SpentAfter(const PrivacyCharge& charge) const {
  if (charge.rdp.size() != orders_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("charge has ", charge.rdp.size(), " RDP values for ", orders_.size(), " orders"));
  }
  absl::MutexLock lock(&mu_);
  return SpentLocked(&charge);
}

absl::StatusOr<PrivacySpent> PrivacyLedger::Spent() const {
  absl::MutexLock lock(&mu_);
  return SpentLocked(nullptr);
}

absl::Status PrivacyLedger::Charge(const PrivacyCharge& charge) {
  if (charge.rdp.size() != orders_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("charge for round ", charge.round, " has ", charge.rdp.size(),
                                                   " RDP values for ", orders_.size(), " orders"));
  }
  for (double r : charge.rdp) {
    if (!(r >= 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat("charge for round ", charge.round, " has RDP value ", r));
    }
  }
  absl::MutexLock lock(&mu_);
  if (auto s = Exec(db_, "BEGIN IMMEDIATE"); !s.ok()) return s;
  sqlite3* const db = db_;  // the lambda runs only here, under the lock
  auto rollback = [db](absl::Status s) {
    Exec(db, "ROLLBACK").IgnoreError();
    return s;
  };
  {
    Statement existing(db_, "SELECT mechanism, parameters, rdp FROM charges WHERE round = ?");
    sqlite3_bind_int64(existing.get(), 1, charge.round);
    if (sqlite3_step(existing.get()) == SQLITE_ROW) {
      const std::string mechanism = reinterpret_cast<const char*>(sqlite3_column_text(existing.get(), 0));
      const std::string parameters = reinterpret_cast<const char*>(sqlite3_column_text(existing.get(), 1));
      const auto rdp = FromBlob(sqlite3_column_blob(existing.get(), 2), sqlite3_column_bytes(existing.get(), 2));
      if (mechanism == charge.mechanism && parameters == charge.parameters && rdp == charge.rdp) {
        Statement voided(db_, "SELECT 1 FROM voids WHERE round = ?");
        sqlite3_bind_int64(voided.get(), 1, charge.round);
        if (sqlite3_step(voided.get()) == SQLITE_ROW) {
          return rollback(absl::FailedPreconditionError(
              absl::StrCat("round ", charge.round,
                           " was charged and voided (it published nothing); round ids are "
                           "not reused")));
        }
        return rollback(absl::OkStatus());  // a retry of a recorded charge
      }
      return rollback(
          absl::AlreadyExistsError(absl::StrCat("round ", charge.round, " was already charged with other parameters")));
    }
  }
  auto spent = SpentLocked(&charge);
  if (!spent.ok()) return rollback(spent.status());
  if (spent->epsilon > budget_.epsilon) {
    return rollback(absl::ResourceExhaustedError(absl::StrCat("round ", charge.round, " would bring epsilon to ",
                                                              spent->epsilon, ", past the budget of ", budget_.epsilon,
                                                              " (delta ", budget_.delta, ")")));
  }
  Statement insert(db_, "INSERT INTO charges (round, mechanism, parameters, rdp) VALUES (?, ?, ?, ?)");
  const std::string blob = Blob(charge.rdp);
  sqlite3_bind_int64(insert.get(), 1, charge.round);
  sqlite3_bind_text(insert.get(), 2, charge.mechanism.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(insert.get(), 3, charge.parameters.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(insert.get(), 4, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(insert.get()) != SQLITE_DONE) return rollback(SqlError(db_, "record charge"));
  Statement steps(db_, "INSERT INTO pld_steps (round, sampling_rate, noise_multiplier, steps) VALUES (?, ?, ?, ?)");
  for (const SampledGaussianSteps& e : charge.pld) {
    sqlite3_reset(steps.get());
    sqlite3_bind_int64(steps.get(), 1, charge.round);
    sqlite3_bind_double(steps.get(), 2, e.sampling_rate);
    sqlite3_bind_double(steps.get(), 3, e.noise_multiplier);
    sqlite3_bind_int64(steps.get(), 4, e.steps);
    if (sqlite3_step(steps.get()) != SQLITE_DONE) return rollback(SqlError(db_, "record charge's steps"));
  }
  if (auto s = Exec(db_, "COMMIT"); !s.ok()) return rollback(s);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PrivacyCharge>> PrivacyLedger::Charges() const {
  absl::MutexLock lock(&mu_);
  return ChargesLocked();
}

absl::StatusOr<std::vector<PrivacyCharge>> PrivacyLedger::ChargesLocked() const {
  Statement q(db_,
              "SELECT round, mechanism, parameters, rdp FROM charges WHERE round NOT IN (SELECT round FROM voids) "
              "ORDER BY round");
  Statement steps(db_, "SELECT sampling_rate, noise_multiplier, steps FROM pld_steps WHERE round = ?");
  if (!q.ok() || !steps.ok()) return SqlError(db_, "read charges");
  std::vector<PrivacyCharge> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    PrivacyCharge c;
    c.round = sqlite3_column_int64(q.get(), 0);
    c.mechanism = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 1));
    c.parameters = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 2));
    c.rdp = FromBlob(sqlite3_column_blob(q.get(), 3), sqlite3_column_bytes(q.get(), 3));
    sqlite3_reset(steps.get());
    sqlite3_bind_int64(steps.get(), 1, c.round);
    while (sqlite3_step(steps.get()) == SQLITE_ROW) {
      c.pld.push_back({.sampling_rate = sqlite3_column_double(steps.get(), 0),
                       .noise_multiplier = sqlite3_column_double(steps.get(), 1),
                       .steps = sqlite3_column_int64(steps.get(), 2)});
    }
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "read charges");
  return out;
}

absl::StatusOr<PrivacyLedger::Reconciled> PrivacyLedger::Reconcile(const std::vector<int64_t>& published_rounds) {
  absl::MutexLock lock(&mu_);
  if (auto s = Exec(db_, "BEGIN IMMEDIATE"); !s.ok()) return s;
  sqlite3* const db = db_;
  auto rollback = [db](absl::Status s) {
    Exec(db, "ROLLBACK").IgnoreError();
    return s;
  };
  if (auto s = Exec(db_, "CREATE TEMP TABLE IF NOT EXISTS published (round INTEGER PRIMARY KEY)"); !s.ok()) {
    return rollback(s);
  }
  if (auto s = Exec(db_, "DELETE FROM temp.published"); !s.ok()) return rollback(s);
  {
    Statement insert(db_, "INSERT OR IGNORE INTO temp.published (round) VALUES (?)");
    for (int64_t round : published_rounds) {
      sqlite3_reset(insert.get());
      sqlite3_bind_int64(insert.get(), 1, round);
      if (sqlite3_step(insert.get()) != SQLITE_DONE) return rollback(SqlError(db_, "list published rounds"));
    }
  }
  Reconciled out;
  if (auto s = Exec(db_,
                    "INSERT INTO voids (round) SELECT round FROM charges WHERE round NOT IN "
                    "(SELECT round FROM temp.published) AND round NOT IN (SELECT round FROM voids)");
      !s.ok()) {
    return rollback(s);
  }
  out.voided = sqlite3_changes(db_);
  if (auto s = Exec(db_, "DELETE FROM voids WHERE round IN (SELECT round FROM temp.published)"); !s.ok()) {
    return rollback(s);
  }
  out.restored = sqlite3_changes(db_);
  if (auto s = Exec(db_, "COMMIT"); !s.ok()) return rollback(s);
  return out;
}

}  // namespace tinyfed::dp
