// The running round's journal (proto/tinyfed/v1/journal.proto): one SQLite
// file, state_dir/round_journal.db (WAL, synchronous=FULL), holding the
// events of the one round that is selecting or running. The engine appends
// an event before anything it caused is seen by a device, so a kill -9
// leaves a journal from which a restarted engine rebuilds the round exactly
// (round_engine_start.cc); an event not yet journaled was not yet answered.
// Thread-compatible: the engine serializes access.
#ifndef TINYFED_AGGREGATOR_INTERNAL_ROUND_JOURNAL_H_
#define TINYFED_AGGREGATOR_INTERNAL_ROUND_JOURNAL_H_

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/journal.pb.h"

namespace SQLite {
class Database;
}

namespace tinyfed::aggregator::internal {

class RoundJournal {
 public:
  static absl::StatusOr<std::unique_ptr<RoundJournal>> Open(const std::filesystem::path& file);
  ~RoundJournal();

  // Durably appends `entry`. An entry of another round than the journal's
  // starts the journal afresh (a round starts only after the last ended).
  absl::Status Append(const v1::JournalEntry& entry);
  // The journaled round's events, oldest first; empty if there is none.
  absl::StatusOr<std::vector<v1::JournalEntry>> Entries() const;
  // Forgets the round (it ended, or cannot be resumed).
  absl::Status Clear();

 private:
  explicit RoundJournal(std::unique_ptr<SQLite::Database> db);
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_ROUND_JOURNAL_H_
