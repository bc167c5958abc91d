#include "aggregator/internal/round_journal.h"

#include "SQLiteCpp/SQLiteCpp.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::aggregator::internal {
namespace {

absl::Status JournalError(const std::string& what, const std::exception& e) {
  return absl::InternalError(absl::StrCat("round journal: ", what, ": ", e.what()));
}

}  // namespace

RoundJournal::RoundJournal(std::unique_ptr<SQLite::Database> db) : db_(std::move(db)) {}
RoundJournal::~RoundJournal() = default;

absl::StatusOr<std::unique_ptr<RoundJournal>> RoundJournal::Open(const std::filesystem::path& file) {
  try {
    auto db = std::make_unique<SQLite::Database>(file.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db->setBusyTimeout(5000);
    db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    db->exec(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, round_id INTEGER NOT NULL, "
        "entry BLOB NOT NULL)");
    return std::unique_ptr<RoundJournal>(new RoundJournal(std::move(db)));
  } catch (const std::exception& e) {
    return JournalError(absl::StrCat("opening ", file.string()), e);
  }
}

absl::Status RoundJournal::Append(const v1::JournalEntry& entry) {
  const std::string bytes = entry.SerializeAsString();
  try {
    SQLite::Transaction transaction(*db_);
    SQLite::Statement stale(*db_, "DELETE FROM events WHERE round_id != ?");
    stale.bind(1, static_cast<int64_t>(entry.round_id()));
    stale.exec();
    SQLite::Statement insert(*db_, "INSERT INTO events (round_id, entry) VALUES (?, ?)");
    insert.bind(1, static_cast<int64_t>(entry.round_id()));
    insert.bind(2, bytes.data(), static_cast<int>(bytes.size()));
    insert.exec();
    transaction.commit();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return JournalError(absl::StrCat("appending an event of round ", entry.round_id()), e);
  }
}

absl::StatusOr<std::vector<v1::JournalEntry>> RoundJournal::Entries() const {
  try {
    SQLite::Statement q(*db_, "SELECT seq, entry FROM events ORDER BY seq");
    std::vector<v1::JournalEntry> out;
    while (q.executeStep()) {
      const SQLite::Column blob = q.getColumn(1);
      v1::JournalEntry entry;
      if (!entry.ParseFromArray(blob.getBlob(), blob.getBytes()) ||
          (!out.empty() && entry.round_id() != out.front().round_id())) {
        return absl::DataLossError(absl::StrCat("round journal: event ", q.getColumn(0).getInt64(), " is damaged"));
      }
      out.push_back(std::move(entry));
    }
    return out;
  } catch (const std::exception& e) {
    return JournalError("reading", e);
  }
}

absl::Status RoundJournal::Clear() {
  try {
    db_->exec("DELETE FROM events");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return JournalError("clearing", e);
  }
}

}  // namespace tinyfed::aggregator::internal
